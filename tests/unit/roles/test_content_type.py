"""Content-type normalisation and the caption keyword fallback (reference §3.1, §5.3, §15)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.roles import classify_content_type, normalise_content_type
from mmzero_runtime.spec import CONTENT_TYPES


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        # already canonical
        pytest.param("geometry", "geometry", id="canonical"),
        # case and surrounding whitespace
        pytest.param("  TimeLine\n", "timeline", id="case-and-whitespace"),
        # spaces become underscores
        pytest.param("data chart", "data_chart", id="space"),
        # hyphens become underscores
        pytest.param("Data-Chart", "data_chart", id="hyphen"),
        # a near miss is not guessed at
        pytest.param("chart", "other", id="unknown"),
        # empty text
        pytest.param("", "other", id="empty"),
        # no tag at all
        pytest.param(None, "other", id="missing"),
    ],
)
def test_normalise_content_type_declared_value_maps_to_vocabulary(
    declared: str | None, expected: str
) -> None:
    assert normalise_content_type(declared) == expected


@pytest.mark.parametrize("declared", ["datachart", "DataChart", " DATACHART "])
def test_normalise_content_type_datachart_is_data_chart(declared: str) -> None:
    # the reference's normalisation knows this alias (§3.1); we mapped it to `other`
    assert normalise_content_type(declared) == "data_chart"


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        # §15: the reference said map (substring "country"); a table is a table
        pytest.param("Country-level GDP comparison table", "table", id="gdp-table"),
        # §15: the reference said geometry; circles alone name no construction
        pytest.param("percentage labels in circles", "other", id="percent-circles"),
        # priority: a diagram outranks the chart it contains
        pytest.param("Flowchart with a small bar chart inset", "diagram", id="diagram-first"),
        # hyphen and no-space spellings of a phrase both match
        pytest.param("A flow-chart of approvals", "diagram", id="hyphenated-phrase"),
        # "mind map" is a diagram, not a map
        pytest.param("A mind map of study topics", "diagram", id="mind-map"),
        # "heat map" is a chart, which outranks map
        pytest.param("A heat map of hourly traffic", "data_chart", id="heat-map"),
        # plural forms match
        pytest.param("Two scatter plots side by side", "data_chart", id="plural"),
        # a construction word
        pytest.param(
            "A triangle inscribed in a circle with its angles marked", "geometry", id="geo"
        ),
        # timeline words
        pytest.param("Milestones of a space programme, 1957 to 1975", "timeline", id="timeline"),
        # map words
        pytest.param("Floor plan of a two-bedroom flat", "map", id="floor-plan"),
        # word boundaries: "barn" is not "bar", "tablet" is not "table"
        pytest.param("A barn beside a tablet", "other", id="word-boundary"),
        # nothing recognisable
        pytest.param("Something colourful", "other", id="no-keyword"),
    ],
)
def test_classify_content_type_caption_returns_type(caption: str, expected: str) -> None:
    assert classify_content_type(caption) == expected


@given(st.text())
def test_classify_content_type_arbitrary_text_returns_known_type(caption: str) -> None:
    assert classify_content_type(caption) in CONTENT_TYPES
