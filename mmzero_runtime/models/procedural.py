"""Procedural chart items with answers known by construction: warm-start data and probes.

Each item is a small chart (bars, a line, a pie or coloured shapes) drawn from (seed, index):
the six-tag proposal, its SVG and the Solver's answers to its easy and hard questions. Items
of different indices never share an rng stream, so `offset` separates training items from
held-out probes (`HELD_OUT_OFFSET`). Questions include ones a tiny model can learn from pixels
(count the bars, the colour of the tallest bar), not only values to read (tiny-model-notes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mmzero_runtime.roles import Proposal, proposal_xml
from mmzero_runtime.spec import SEED_TOPICS

GENERATOR_VERSION = 2
"""Bumped whenever the items for a (seed, index) change; part of the tiny model's cache key."""

HELD_OUT_OFFSET = 1_000_000
"""First index of held-out items; warm-start data uses indices below it."""

ChartKind = Literal["bar", "line", "pie", "shapes"]
KINDS: tuple[ChartKind, ...] = ("bar", "line", "pie", "shapes")

WIDTH, HEIGHT = 320, 240
"""The canvas: 4:3 like the tiny budget's 224 x 168, drawn at 0.7 scale there."""

COLOURS = ("red", "blue", "green", "orange", "purple", "teal", "brown", "gray")
LABELS = (
    "Oslo", "Rome", "Lima", "Kyiv", "Cairo", "Quito", "Perth", "Dakar", "Hanoi", "Riga",
    "Apple", "Pear", "Plum", "Fig", "Kiwi", "Lime", "Mango", "Grape",
    "Alpha", "Beta", "Gamma", "Delta", "North", "South", "East", "West",
)  # fmt: skip
SUBJECTS = (
    ("Rainfall", "mm"), ("Visitors", "thousands"), ("Sales", "units"), ("Votes", "count"),
    ("Downloads", "thousands"), ("Orders", "count"), ("Energy use", "kWh"),
    ("Trees planted", "count"),
)  # fmt: skip
SHAPES = ("circle", "square", "triangle")


Skill = Literal["read", "count", "colour", "compare", "arithmetic"]
"""What a question asks of the reader; count, colour and compare can be learnt from pixels
alone, read and arithmetic need the digits to be read (tiny-model-notes)."""


@dataclass(frozen=True)
class SolverTarget:
    """One question about the picture, its exact answer and a well-formatted Solver reply."""

    question: str
    answer: str
    response: str
    skill: Skill


@dataclass(frozen=True)
class ChartItem:
    """One generated picture and every role's target for it."""

    index: int
    seed: int
    kind: ChartKind
    topic: str
    """The seed topic the Proposer example is prompted with (`spec.SEED_TOPICS`)."""
    proposal: Proposal
    svg: str
    easy: SolverTarget
    hard: SolverTarget
    data: tuple[tuple[str, str, int], ...]
    """(label, colour, value) per element, in drawing order: the ground truth of the answers."""

    @property
    def id(self) -> str:
        return f"procedural-s{self.seed}-i{self.index}"

    @property
    def proposer_response(self) -> str:
        """The Proposer's target: the six tags."""
        return proposal_xml(self.proposal)

    @property
    def coder_response(self) -> str:
        """The Coder's target: the SVG in a ```svg fence."""
        return f"```svg\n{self.svg}\n```"


def _reply(reasoning: str, answer: str | int) -> str:
    return f"<think>{reasoning}</think> \\boxed{{{answer}}}"


def _skill(question: str) -> Skill:
    """The skill a question of this generator tests, from its fixed wording."""
    if any(word in question for word in ("difference", "sum", "total of", "How much")):
        return "arithmetic"
    if question.startswith("How many"):
        return "count"
    if question.startswith("What colour"):
        return "colour"
    if question.startswith(("Which", "In which")):
        return "compare"
    return "read"


def _target(question: str, answer: str | int, reasoning: str) -> SolverTarget:
    return SolverTarget(question, str(answer), _reply(reasoning, answer), _skill(question))


@dataclass(frozen=True)
class _Drawn:
    """What a kind's drawer returns before the item is assembled."""

    caption: str
    svg_body: list[str]
    easy: SolverTarget
    hard: SolverTarget
    data: tuple[tuple[str, str, int], ...]


def _text(x: float, y: float, body: str) -> str:
    """A label; size 12 and centring are inherited from the root element."""
    return f'<text x="{x:g}" y="{y:g}">{body}</text>'


def _title(body: str) -> str:
    return f'<text x="160" y="20" font-size="14">{body}</text>'


def _series(rng: random.Random, low: int, high: int) -> tuple[list[str], list[str], list[int]]:
    """3-6 distinct labels, distinct colours and distinct values (so extremes are unique)."""
    n = rng.randint(3, 6)
    return rng.sample(LABELS, n), rng.sample(COLOURS, n), rng.sample(range(low, high + 1), n)


def _extremes(labels: list[str], values: list[int]) -> tuple[int, int]:
    return values.index(max(values)), values.index(min(values))


def _listing(labels: list[str], values: list[int], colours: list[str] | None = None) -> str:
    if colours is None:
        return ", ".join(f"{label} {value}" for label, value in zip(labels, values, strict=True))
    parts = zip(labels, values, colours, strict=True)
    return ", ".join(f"{label} {value} ({colour})" for label, value, colour in parts)


def _bar(rng: random.Random, data: list[tuple[str, str, int]]) -> _Drawn:
    labels, colours, values = (list(column) for column in zip(*data, strict=True))
    subject, unit = rng.choice(SUBJECTS)
    title = f"{subject} by place ({unit})"
    n, top, low = len(values), *_extremes(labels, values)
    slot = 280 // n
    body = [_title(title), '<line x1="20" y1="200" x2="300" y2="200" stroke="black"/>']
    for i, (label, colour, value) in enumerate(data):
        x, width, height = 20 + i * slot + slot // 5, slot * 3 // 5, value * 2
        body.append(
            f'<rect x="{x}" y="{200 - height}" width="{width}" height="{height}" fill="{colour}"/>'
        )
        body.append(_text(x + width // 2, 195 - height, str(value)))
        body.append(_text(x + width // 2, 216, label))
    caption = (
        f'A bar chart titled "{title}" with {n} bars: {_listing(labels, values, colours)}. '
        "Each bar has its value above it and its label below it."
    )
    i = rng.randrange(n)
    easy = rng.choice(
        [
            _target(f"What is the value of the {labels[i]} bar?", values[i],
                    f"The {labels[i]} bar is labelled {values[i]}."),
            _target("How many bars are there?", n, f"I count the bars: {', '.join(labels)}."),
            _target("What colour is the tallest bar?", colours[top],
                    f"The tallest bar is {labels[top]}, drawn in {colours[top]}."),
        ]
    )  # fmt: skip
    hard = rng.choice(
        [
            _target("What is the difference between the tallest and the shortest bar?",
                    values[top] - values[low],
                    f"Tallest {labels[top]} {values[top]}, shortest {labels[low]} {values[low]}; "
                    f"{values[top]} - {values[low]} = {values[top] - values[low]}."),
            _target("Which bar is the tallest?", labels[top],
                    f"The highest value is {values[top]}, the {labels[top]} bar."),
            _target("What is the sum of all bar values?", sum(values),
                    f"{' + '.join(map(str, values))} = {sum(values)}."),
        ]
    )  # fmt: skip
    return _Drawn(caption, body, easy, hard, tuple(data))


def _line(rng: random.Random, data: list[tuple[str, str, int]]) -> _Drawn:
    values = [value for _, _, value in data]
    start = rng.randint(2000, 2018)
    years = [str(start + i) for i in range(len(values))]
    colour = data[0][1]
    subject, unit = rng.choice(SUBJECTS)
    title = f"{subject} per year ({unit})"
    n, top, low = len(values), *_extremes(years, values)
    step = 260 // (n - 1)
    points = [(30 + i * step, 200 - value * 2) for i, value in enumerate(values)]
    path = " ".join(f"{x:g},{y:g}" for x, y in points)
    body = [
        _title(title),
        '<line x1="20" y1="200" x2="300" y2="200" stroke="black"/>',
        f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>',
    ]
    for (x, y), year, value in zip(points, years, values, strict=True):
        body.append(_text(x, y - 6, str(value)))
        body.append(_text(x, 216, year))
    caption = (
        f'A {colour} line chart titled "{title}" with {n} points: {_listing(years, values)}. '
        "Each point of the line has its value above it and its year below the axis."
    )
    i = rng.randrange(n)
    easy = rng.choice(
        [
            _target(f"What is the value in {years[i]}?", values[i],
                    f"The point for {years[i]} is labelled {values[i]}."),
            _target("How many points does the line have?", n, f"I count the points: {n}."),
        ]
    )  # fmt: skip
    hard = rng.choice(
        [
            _target("In which year is the value highest?", years[top],
                    f"The highest point is {values[top]}, in {years[top]}."),
            _target("What is the difference between the highest and the lowest value?",
                    values[top] - values[low],
                    f"Highest {values[top]} in {years[top]}, lowest {values[low]} in "
                    f"{years[low]}; {values[top]} - {values[low]} = {values[top] - values[low]}."),
        ]
    )  # fmt: skip
    return _Drawn(caption, body, easy, hard, tuple(zip(years, [colour] * n, values, strict=True)))


def _pie(rng: random.Random, data: list[tuple[str, str, int]]) -> _Drawn:
    labels, colours, values = (list(column) for column in zip(*data, strict=True))
    subject, unit = rng.choice(SUBJECTS)
    title = f"{subject} share ({unit})"
    n, top, low = len(values), *_extremes(labels, values)
    total, angle = sum(values), -math.pi / 2
    body = [_title(title)]
    for _, colour, value in data:
        sweep = 2 * math.pi * value / total
        x0, y0 = 110 + 80 * math.cos(angle), 130 + 80 * math.sin(angle)
        x1, y1 = 110 + 80 * math.cos(angle + sweep), 130 + 80 * math.sin(angle + sweep)
        large = int(sweep > math.pi)
        body.append(
            f'<path d="M110,130 L{x0:.0f},{y0:.0f} A80,80 0 {large} 1 {x1:.0f},{y1:.0f} Z" '
            f'fill="{colour}"/>'
        )
        angle += sweep
    for i, (label, colour, value) in enumerate(data):
        y = 60 + i * 24
        body.append(f'<rect x="210" y="{y - 10}" width="10" height="10" fill="{colour}"/>')
        body.append(_text(260, y, f"{label} {value}"))
    caption = (
        f'A pie chart titled "{title}" with {n} slices: {_listing(labels, values, colours)}. '
        "A legend on the right gives each slice's label and value."
    )
    i = rng.randrange(n)
    easy = rng.choice(
        [
            _target(f"What is the value of the {labels[i]} slice?", values[i],
                    f"The legend gives {labels[i]} {values[i]}."),
            _target("How many slices does the pie have?", n, f"I count the slices: {n}."),
            _target("What colour is the largest slice?", colours[top],
                    f"The largest slice is {labels[top]}, in {colours[top]}."),
        ]
    )  # fmt: skip
    hard = rng.choice(
        [
            _target("What is the total of all slices?", total,
                    f"{' + '.join(map(str, values))} = {total}."),
            _target("How much larger is the largest slice than the smallest?",
                    values[top] - values[low],
                    f"Largest {labels[top]} {values[top]}, smallest {labels[low]} {values[low]}; "
                    f"{values[top]} - {values[low]} = {values[top] - values[low]}."),
        ]
    )  # fmt: skip
    return _Drawn(caption, body, easy, hard, tuple(data))


def _shape(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "circle":
        return f'<circle cx="{x:g}" cy="{y:g}" r="14" fill="{colour}"/>'
    if kind == "square":
        return f'<rect x="{x - 13:g}" y="{y - 13:g}" width="26" height="26" fill="{colour}"/>'
    corners = f"{x:g},{y - 15:g} {x - 15:g},{y + 13:g} {x + 15:g},{y + 13:g}"
    return f'<polygon points="{corners}" fill="{colour}"/>'


def _shapes(rng: random.Random, _unused: list[tuple[str, str, int]]) -> _Drawn:
    palette = rng.sample(COLOURS, 3)
    kinds = [rng.choice(SHAPES) for _ in range(rng.randint(3, 8))]
    colours = [rng.choice(palette) for _ in kinds]
    cells = rng.sample(range(18), len(kinds))  # a 6 x 3 grid, no overlaps
    body = [_title("Shapes")]
    for kind, colour, cell in zip(kinds, colours, cells, strict=True):
        body.append(_shape(kind, 35 + (cell % 6) * 50, 65 + (cell // 6) * 60, colour))
    listing = ", ".join(f"a {colour} {kind}" for kind, colour in zip(kinds, colours, strict=True))
    caption = f'A picture titled "Shapes" with {len(kinds)} shapes on a grid: {listing}.'
    shape, colour = rng.choice(kinds), rng.choice(colours)
    n_shape, n_colour = kinds.count(shape), colours.count(colour)
    easy = rng.choice(
        [
            _target(f"How many {shape}s are there?", n_shape, f"I count the {shape}s: {n_shape}."),
            _target("How many shapes are there in total?", len(kinds),
                    f"I count all shapes: {len(kinds)}."),
        ]
    )  # fmt: skip
    n_both = sum(k == shape and c == colour for k, c in zip(kinds, colours, strict=True))
    hard = rng.choice(
        [
            _target(f"How many {colour} shapes are there?", n_colour,
                    f"I count the {colour} shapes: {n_colour}."),
            _target(f"How many {colour} {shape}s are there?", n_both,
                    f"Among the {n_shape} {shape}s, {n_both} are {colour}."),
        ]
    )  # fmt: skip
    drawn = tuple((kind, colour, 1) for kind, colour in zip(kinds, colours, strict=True))
    return _Drawn(caption, body, easy, hard, drawn)


_DRAWERS: dict[ChartKind, Callable[[random.Random, list[tuple[str, str, int]]], _Drawn]] = {
    "bar": _bar,
    "line": _line,
    "pie": _pie,
    "shapes": _shapes,
}
_VALUE_RANGES: dict[ChartKind, tuple[int, int]] = {
    "bar": (5, 80),  # 2 px per unit: the tallest bar's value stays below the title
    "line": (5, 80),
    "pie": (2, 60),
    "shapes": (1, 9),  # unused: the shapes drawer makes its own data
}


def _svg(body: list[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="12" text-anchor="middle">'
    )
    background = f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>'
    return "\n".join([head, background, *body, "</svg>"])


def generate_item(index: int, *, seed: int) -> ChartItem:
    """The item at `index` for `seed`; the same pair always gives the same item."""
    rng = random.Random(f"mmzero-procedural-v{GENERATOR_VERSION}:{seed}:{index}")
    kind = rng.choice(KINDS)
    topic = rng.choice(SEED_TOPICS)
    labels, colours, values = _series(rng, *_VALUE_RANGES[kind])
    data = list(zip(labels, colours, values, strict=True))
    drawn = _DRAWERS[kind](rng, data)
    content_type = "other" if kind == "shapes" else "data_chart"
    proposal = Proposal(
        caption=drawn.caption,
        easy_question=drawn.easy.question,
        easy_answer=drawn.easy.answer,
        hard_question=drawn.hard.question,
        hard_answer=drawn.hard.answer,
        content_type=content_type,
    )
    return ChartItem(
        index, seed, kind, topic, proposal, _svg(drawn.svg_body), drawn.easy, drawn.hard, drawn.data
    )


def generate_items(count: int, *, seed: int, offset: int = 0) -> list[ChartItem]:
    """Items `offset` .. `offset + count - 1`; use `offset=HELD_OUT_OFFSET` for held-out ones."""
    return [generate_item(index, seed=seed) for index in range(offset, offset + count)]
