"""The Proposer role: its prompt, the six-tag proposal it answers with, and the strict parser.

The prompt follows reference §3.1 in our own words. The parser is the reward's strict one: five
non-empty fields, `content_type` optional. Unlike the reference it never strips whitespace around
`<`, `>` or `/` in the text, which changed values such as `1 / 2` (§13.13); whitespace inside
the tags themselves (`< caption >`, `</ caption>`) is still tolerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmzero_runtime.roles.chat import ChatMessage, text_part, user_turn
from mmzero_runtime.roles.content_type import normalise_content_type
from mmzero_runtime.spec import CONTENT_TYPES

REQUIRED_TAGS: tuple[str, ...] = (
    "caption",
    "easy_question",
    "easy_answer",
    "hard_question",
    "hard_answer",
)
"""Tags a proposal must fill, in the order failures are reported."""

PROPOSER_INSTRUCTION = f"""\
You are designing one information-dense picture. It will be drawn as SVG and then used to test \
how well a reader can find and reason over what is shown. Treat the topic above as a starting \
point and choose a concrete, specific subject inside it.

Plan the design silently. Then reply with exactly these six XML blocks, in this order, and \
nothing before, between or after them:
<content_type>one of: {", ".join(CONTENT_TYPES)}</content_type>
<caption>a complete specification of the picture: every element, label, value, colour and \
layout detail that someone drawing it needs</caption>
<easy_question>a question answered by reading one thing directly off the picture</easy_question>
<easy_answer>the answer to the easy question</easy_answer>
<hard_question>a question that needs several reasoning steps over the picture</hard_question>
<hard_answer>the answer to the hard question</hard_answer>

Suitable kinds of picture: charts with several data series, diagrams of processes or \
structures, geometric constructions, infographics and tables, floor plans and maps.

Complexity: the caption must meet at least 3 of these 7 requirements.
1. Two or more data series or groups.
2. Annotations, callouts or labelled arrows.
3. A second panel, an inset or a sub-chart.
4. Named colours or marker shapes for particular elements.
5. Derived quantities shown in the picture, such as totals, percentages, ratios or differences.
6. A non-trivial pattern, such as a peak, a crossover or an outlier.
7. A geometric construction: angles, lengths, intersections or inscribed shapes.

Avoid the obvious:
- No stock examples such as sales for each month from January to December.
- No data that only rises or only falls.
- No vague axis titles such as "Value" or "Category": name the actual quantity and its unit.
- No picture with fewer than three elements, and no chart with a single series.

Rules for the hard question:
- It must combine information from more than one part of the picture, in more than one step.
- It must make the reader take at least one value from the picture, so do not write all the \
numbers it needs into the question.
- Weak: "The red bar is 40 and the blue bar is 25; what is their difference?" (every number is \
given, so the picture is not needed)
- Weak: "What is the title of the chart?" (a single look-up, no reasoning)
- Strong: "By how much does the tallest bar of the 2021 group exceed the shortest bar of the \
2019 group?"
- Strong: "In the inset, what is the sum of the two angles marked with red arcs?"

Every answer is one number, one word or a very short phrase, with no units and no explanation."""


@dataclass(frozen=True)
class Proposal:
    """A parsed proposal: what the Coder draws and the two questions the Solver answers."""

    caption: str
    easy_question: str
    easy_answer: str
    hard_question: str
    hard_answer: str
    content_type: str = "other"
    """Normalised declared type (`spec.CONTENT_TYPES`); see `classify_content_type` for `other`."""


@dataclass(frozen=True)
class ParseFailure:
    """Why a response is not a proposal; `reason` names the tag, e.g. "empty <hard_answer>"."""

    reason: str


def build_proposer_messages(topic: str) -> list[ChatMessage]:
    """The Proposer's conversation: the seed topic first, then the designer instruction (§3.1)."""
    return user_turn(text_part(f"{topic}\n\n{PROPOSER_INSTRUCTION}"))


def _tag_pattern(tag: str) -> re.Pattern[str]:
    """First `<tag>…</tag>`, shortest body; spaces allowed inside the tag marks only."""
    return re.compile(rf"<\s*{tag}\s*>(.*?)<\s*/\s*{tag}\s*>", re.DOTALL)


_PATTERNS: dict[str, re.Pattern[str]] = {
    tag: _tag_pattern(tag) for tag in (*REQUIRED_TAGS, "content_type")
}


def _field(response: str, tag: str) -> str | None:
    """The stripped body of the first `tag` block, or None when there is no closed block."""
    match = _PATTERNS[tag].search(response)
    return None if match is None else match.group(1).strip()


def parse_proposal(response: str) -> Proposal | ParseFailure:
    """Strictly parse a Proposer response; the first missing or empty required tag fails it.

    An empty block is a failure, never the text of the next tag (reference §15).

    >>> parse_proposal("<caption>c</caption><easy_question>q</easy_question>")
    ParseFailure(reason='missing <easy_answer>')
    """
    values: dict[str, str] = {}
    for tag in REQUIRED_TAGS:
        value = _field(response, tag)
        if value is None:
            return ParseFailure(f"missing <{tag}>")
        if not value:
            return ParseFailure(f"empty <{tag}>")
        values[tag] = value
    content_type = normalise_content_type(_field(response, "content_type"))
    return Proposal(**values, content_type=content_type)


def proposal_xml(proposal: Proposal) -> str:
    """The six blocks a well-formed Proposer response holds; `parse_proposal` inverts it."""
    fields = {"content_type": proposal.content_type, **_required_values(proposal)}
    return "\n".join(f"<{tag}>{value}</{tag}>" for tag, value in fields.items())


def _required_values(proposal: Proposal) -> dict[str, str]:
    """The five required fields by tag name, in `REQUIRED_TAGS` order."""
    return {
        "caption": proposal.caption,
        "easy_question": proposal.easy_question,
        "easy_answer": proposal.easy_answer,
        "hard_question": proposal.hard_question,
        "hard_answer": proposal.hard_answer,
    }
