"""The Proposer's content type: normalising the declared tag, and a keyword fallback on the caption.

The fallback feeds the content-type diversity term of the Proposer reward (reference §5.3) when a
proposal declares `other`. The reference matched substrings, so "Country-level GDP comparison
table" became `map` and "percentage labels in circles" became `geometry` (§15); we match whole
words and phrases, and keep only words that name the kind of picture rather than its subject.
"""

from __future__ import annotations

import re

from mmzero_runtime.spec import CONTENT_TYPES

# Checked in this order; the first type with a hit wins (reference §5.3 priority). Entries are
# separated by "|"; words in a phrase may be joined by spaces, a hyphen or nothing ("flow chart",
# "flow-chart", "flowchart"), and a trailing plural "s"/"es" is accepted. Subject words that
# appear in captions of any kind ("network", "country", "percentage", "circle") are left out.
_KEYWORDS: tuple[tuple[str, str], ...] = (
    (
        "diagram",
        "diagram | flow chart | org chart | organisation chart | organization chart"
        " | tree diagram | decision tree | family tree | venn | state machine | schematic"
        " | mind map | dependency graph | process flow | node link",
    ),
    (
        "data_chart",
        "chart | bar | plot | scatter | histogram | pie | donut | doughnut | line graph"
        " | bar graph | heatmap | heat map | stacked | data series",
    ),
    (
        "geometry",
        "geometry | geometric | triangle | polygon | quadrilateral | pentagon | hexagon | angle"
        " | radius | radii | diameter | chord | tangent | perpendicular | bisector | hypotenuse"
        " | inscribed | circumscribed | vertex | vertices | congruent | parallelogram"
        " | trapezoid | compass construction",
    ),
    ("timeline", "timeline | chronology | chronological | milestone | gantt | roadmap"),
    (
        "map",
        "map | floor plan | street | compass rose | latitude | longitude | terrain | subway"
        " | metro line | cartographic | site plan",
    ),
    ("table", "table | tabular | spreadsheet | matrix | grid of values"),
)


def _keyword_pattern(keywords: str) -> re.Pattern[str]:
    """One case-insensitive whole-word pattern for a "|"-separated keyword list."""
    phrases = (kw.split() for kw in keywords.split("|"))
    parts = (r"[\s\-]*".join(map(re.escape, words)) for words in phrases)
    return re.compile(r"\b(?:" + "|".join(parts) + r")(?:e?s)?\b", re.IGNORECASE)


_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, _keyword_pattern(words)) for kind, words in _KEYWORDS
)


_ALIASES = {"datachart": "data_chart"}
"""Spellings the reference's normalisation maps onto a listed type (§3.1)."""


def normalise_content_type(declared: str | None) -> str:
    """Lower-case, spaces and hyphens to `_`, aliases resolved; else `other` (§3.1).

    >>> [normalise_content_type(d) for d in (" Data-Chart ", "DataChart", "pie", None)]
    ['data_chart', 'data_chart', 'other', 'other']
    """
    if declared is None:
        return "other"
    kind = re.sub(r"[\s\-]+", "_", declared.strip().lower())
    kind = _ALIASES.get(kind, kind)
    return kind if kind in CONTENT_TYPES else "other"


def classify_content_type(caption: str) -> str:
    """The content type a caption's words suggest, for proposals that declared `other` (§5.3).

    >>> classify_content_type("Country-level GDP comparison table")
    'table'
    """
    for kind, pattern in _PATTERNS:
        if pattern.search(caption):
            return kind
    return "other"


def reward_content_type(declared: str, caption: str) -> str:
    """The type the Proposer reward's r_ct counts: the declared one, or the caption's when that
    is `other` (reference §5.3 `_get_content_type`).

    >>> reward_content_type("other", "A pie chart of energy use"), reward_content_type("map", "")
    ('data_chart', 'map')
    """
    return classify_content_type(caption) if declared == "other" else declared
