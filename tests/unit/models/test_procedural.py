"""The procedural generator: answers are right by construction, output is deterministic.

The answers are checked against an independent oracle that reads the data back out of the SVG
(bar heights, point positions, legend entries, shape elements), not from the generator's own
data, so a drawing that disagrees with its answers fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree import ElementTree

import pytest

from mmzero_runtime.models.procedural import (
    HELD_OUT_OFFSET,
    KINDS,
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


def _read_line(svg: str) -> Drawn:
    (line,) = _elements(svg, "polyline")
    points = [pair.split(",") for pair in line.get("points", "").split()]
    return [
        (year, line.get("stroke", ""), (200 - float(y)) / 2)
        for year, (_, y) in zip(_axis_labels(svg), points, strict=True)
    ]


def _read_pie(svg: str) -> Drawn:
    keys = [r for r in _elements(svg, "rect") if r.get("fill") != "white"]
    entries = [t.text or "" for t in _elements(svg, "text")][1:]  # after the title
    out = []
    for key, entry in zip(keys, entries, strict=True):
        label, value = entry.rsplit(" ", 1)
        out.append((label, key.get("fill", ""), float(value)))
    assert len(_elements(svg, "path")) == len(out)  # one slice per legend entry
    return out


def _read_shapes(svg: str) -> Drawn:
    root = ElementTree.fromstring(svg)
    kinds = {"circle": "circle", "rect": "square", "polygon": "triangle"}
    return [
        (kinds[el.tag.removeprefix(NS)], el.get("fill", ""), 1.0)
        for el in root
        if el.tag.removeprefix(NS) in kinds and el.get("fill") != "white"
    ]


READERS: dict[str, Callable[[str], Drawn]] = {
    "bar": _read_bars, "line": _read_line, "pie": _read_pie, "shapes": _read_shapes,
}  # fmt: skip


def _num(value: float) -> str:
    return str(round(value))


def _oracle(question: str, drawn: Drawn) -> str:
    """The answer to one of the generator's question wordings, from the drawn data."""
    values = [v for _, _, v in drawn]
    top = max(drawn, key=lambda d: d[2])
    low = min(drawn, key=lambda d: d[2])
    if m := re.fullmatch(r"What is the value (?:of the|in) (\w+)(?: bar| slice)?\?", question):
        return _num(next(v for label, _, v in drawn if label == m.group(1)))
    if re.fullmatch(r"How many (bars|points|slices|shapes)( does the \w+ have| are there)"
                    r"( in total)?\?", question):  # fmt: skip
        return str(len(drawn))
    if m := re.fullmatch(r"How many (\w+?)s are there\?", question):
        return str(sum(label == m.group(1) for label, _, _ in drawn))
    if m := re.fullmatch(r"How many (\w+) shapes are there\?", question):
        return str(sum(colour == m.group(1) for _, colour, _ in drawn))
    if m := re.fullmatch(r"How many (\w+) (\w+?)s are there\?", question):
        return str(sum(d[1] == m.group(1) and d[0] == m.group(2) for d in drawn))
    if question.startswith("What colour"):
        return top[1]
    if question.startswith(("Which", "In which")):
        return top[0]
    if "sum" in question or "total" in question:
        return _num(sum(values))
    if "difference" in question or "How much larger" in question:
        return _num(top[2] - low[2])
    raise AssertionError(f"no oracle for question {question!r}")


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item.id)
def test_generated_answers_match_svg_oracle(item: ChartItem) -> None:
    drawn = READERS[item.kind](item.svg)
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


def test_generated_items_cover_every_kind_and_skill() -> None:
    assert {item.kind for item in ITEMS} == set(KINDS)
    skills = {t.skill for item in ITEMS for t in (item.easy, item.hard)}
    assert skills == {"read", "count", "colour", "compare", "arithmetic"}


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
        assert item.proposal.content_type == ("other" if item.kind == "shapes" else "data_chart")
