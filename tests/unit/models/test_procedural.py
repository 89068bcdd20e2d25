"""The procedural generator: answers are right by construction, output is deterministic.

The answers are checked against an independent oracle that reads the data back out of the SVG
(bar heights, point positions, legend entries, shape elements), not from the generator's own
data, so a drawing that disagrees with its answers fails.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest

from mmzero_runtime.models.procedural import (
    COLOURS,
    HELD_OUT_OFFSET,
    ChartItem,
    generate_item,
    generate_items,
)
from mmzero_runtime.roles import Proposal, check_format, extract_boxed, extract_svg, parse_proposal

NS = "{http://www.w3.org/2000/svg}"
ITEMS = generate_items(300, seed=3)

# (label, colour, value) per drawn element, read back from the SVG
Drawn = list[tuple[str, str, float]]


def _elements(svg: str, tag: str) -> list[ElementTree.Element]:
    return list(ElementTree.fromstring(svg).iter(f"{NS}{tag}"))


def _axis_labels(svg: str) -> list[str]:
    return [t.text or "" for t in _elements(svg, "text") if t.get("y") == "216"]


def _read_bars(svg: str) -> Drawn:
    bars = [r for r in _elements(svg, "rect") if r.get("fill") != "white"]
    labels = _axis_labels(svg)
    return [
        (label, r.get("fill", ""), float(r.get("height", "0")) / 2)
        for label, r in zip(labels, bars, strict=True)
    ]


def _oracle(question: str, drawn: Drawn) -> str:
    """The answer to a question of the generator, from the bars it names (those of a colour,
    or all of them)."""
    colour = next((c for c in COLOURS if re.search(rf"\b{c}\b", question)), None)
    named = [d for d in drawn if colour in (None, d[1])]
    if re.search(r"\b(how many|count)\b", question, re.IGNORECASE):
        return str(len(named))
    if "colour" in question:
        (drawn_in,) = {d[1] for d in named}
        return drawn_in
    raise AssertionError(f"no oracle for question {question!r}")


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item.id)
def test_generated_answers_match_svg_oracle(item: ChartItem) -> None:
    drawn = _read_bars(item.svg)
    for target in (item.easy, item.hard):
        assert target.answer == _oracle(target.question, drawn), target.question


def test_generated_proposals_parse_to_same_proposal() -> None:
    for item in ITEMS:
        assert parse_proposal(item.proposer_response) == item.proposal


def test_generated_coder_response_extracts_svg() -> None:
    for item in ITEMS:
        extraction = extract_svg(item.coder_response)
        assert (extraction.code, extraction.source) == (item.svg, "svg_fence")


def test_generated_solver_responses_formatted_with_answer() -> None:
    for item in ITEMS:
        for target in (item.easy, item.hard):
            assert check_format(target.response)
            assert extract_boxed(target.response) == target.answer


def test_generated_svg_has_white_background_and_viewbox() -> None:
    for item in ITEMS:
        root = ElementTree.fromstring(item.svg)
        assert root.get("viewBox") == "0 0 320 240"
        first = root[0]
        assert (first.tag, first.get("fill"), first.get("width")) == (f"{NS}rect", "white", "320")


def test_generated_items_ask_colour_easy_and_count_hard_with_every_count() -> None:
    skills = {t.skill for item in ITEMS for t in (item.easy, item.hard)}
    assert skills == {"count", "colour"}
    assert {t.skill for item in ITEMS for t in [item.hard]} == {"count"}
    assert {int(item.hard.answer) for item in ITEMS} == {2, 3, 4, 5}


def test_generate_items_same_seed_same_items() -> None:
    assert generate_items(20, seed=3) == ITEMS[:20]
    assert generate_item(7, seed=3) == ITEMS[7]


def test_generate_items_other_seed_other_items() -> None:
    other = generate_items(20, seed=4)
    assert sum(a.svg == b.svg for a, b in zip(other, ITEMS, strict=False)) == 0


def test_generate_items_held_out_never_repeat_training_items() -> None:
    training = {item.svg for item in generate_items(2000, seed=0)}
    held_out = generate_items(200, seed=0, offset=HELD_OUT_OFFSET)
    assert all(item.svg not in training for item in held_out)
    assert [item.index for item in held_out[:2]] == [HELD_OUT_OFFSET, HELD_OUT_OFFSET + 1]


def test_generated_proposal_content_type_known() -> None:
    for item in ITEMS:
        assert isinstance(item.proposal, Proposal)
        assert item.proposal.content_type == "data_chart"
