"""Procedural pictures with answers known by construction: warm-start data and probes.

Each item is a small bar chart drawn from (seed, index): the six-tag proposal, its SVG and the
Solver's answers to its easy and hard questions. Items of different
indices never share an rng stream, so `offset` separates training items from held-out probes
(`HELD_OUT_OFFSET`).

Every question is one the tiny model can learn from pixels: the colour of the bars (easy) and
how many bars there are (hard). Questions that need digits read, or a relation between elements
(the tallest bar's colour, a sum), stayed at chance after 600 Solver steps, and so did counting
on a mix of bars, slices, points and shapes; a Solver at chance makes majority-vote labels that
are noise, and the self-evolving loop has nothing to learn from (benchmarks/RESULTS.md, "What
the tiny Solver can learn from pixels").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from mmzero_runtime.roles import Proposal, proposal_xml
from mmzero_runtime.spec import SEED_TOPICS

GENERATOR_VERSION = 3
"""Bumped whenever the items for a (seed, index) change; part of the tiny model's cache key."""

HELD_OUT_OFFSET = 1_000_000
"""First index of held-out items; warm-start data uses indices below it."""

ChartKind = Literal["bar"]
COUNTS = range(2, 6)
"""Bars per chart: four answers, chance 25 %."""

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


BAR_COLOUR_QUESTIONS = (
    "What colour are the bars?",
    "What colour are the bars of the {topic} chart?",
    "In the chart of {topic}, which colour are the bars drawn in?",
    "Which colour fills every bar showing {topic}?",
    "The {topic} bars are all one colour: which?",
    "Name the colour used for the {topic} bars.",
)
BAR_COUNT_QUESTIONS = (
    "How many bars are there?",
    "How many bars does the {topic} chart have?",
    "How many {colour} bars are drawn in the chart?",
    "Count the bars of {topic}: how many are there?",
    "How many places does the {topic} chart show as {colour} bars?",
)
"""Several wordings of each question, some naming the chart's subject or colour: a Proposer
that learnt one wording would trip the collapse alarm (distinct questions) and earn nothing
from the diversity reward; the answer still comes from the pixels alone."""


Skill = Literal["count", "colour"]
"""What a question asks of the reader; both can be learnt from pixels alone."""


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


def _target(question: str, answer: str | int, reasoning: str, skill: Skill) -> SolverTarget:
    """The reasoning is the same sentence for every chart: what the model can learn is the
    answer from the pixels, not a description it cannot read off them."""
    response = f"<think>{reasoning}</think> \\boxed{{{answer}}}"
    return SolverTarget(question, str(answer), response, skill)


@dataclass(frozen=True)
class _Drawn:
    """What the drawer returns before the item is assembled."""

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


def _bar(rng: random.Random, count: int, colour: str) -> _Drawn:
    """`count` bars of one colour, distinct values, each labelled with its value and name."""
    labels, values = rng.sample(LABELS, count), rng.sample(range(5, 81), count)
    subject, unit = rng.choice(SUBJECTS)
    title = f"{subject} by place ({unit})"
    slot = 280 // count
    body = [_title(title), '<line x1="20" y1="200" x2="300" y2="200" stroke="black"/>']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x, width, height = 20 + i * slot + slot // 5, slot * 3 // 5, value * 2  # 2 px per unit
        body.append(
            f'<rect x="{x}" y="{200 - height}" width="{width}" height="{height}" fill="{colour}"/>'
        )
        body.append(_text(x + width // 2, 195 - height, str(value)))
        body.append(_text(x + width // 2, 216, label))
    listing = ", ".join(f"{label} {value}" for label, value in zip(labels, values, strict=True))
    caption = (
        f'A bar chart titled "{title}" with {count} {colour} bars: {listing}. '
        "Each bar has its value above it and its label below it."
    )
    topic = subject.lower()
    easy = _target(rng.choice(BAR_COLOUR_QUESTIONS).format(topic=topic, colour=colour), colour,
                   "I look at the colour of the bars.", "colour")  # fmt: skip
    hard = _target(rng.choice(BAR_COUNT_QUESTIONS).format(topic=topic, colour=colour), count,
                   "I count the bars one by one.", "count")  # fmt: skip
    data = tuple((label, colour, value) for label, value in zip(labels, values, strict=True))
    return _Drawn(caption, body, easy, hard, data)


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
    topic = rng.choice(SEED_TOPICS)
    drawn = _bar(rng, rng.choice(COUNTS), rng.choice(COLOURS))
    proposal = Proposal(
        caption=drawn.caption,
        easy_question=drawn.easy.question,
        easy_answer=drawn.easy.answer,
        hard_question=drawn.hard.question,
        hard_answer=drawn.hard.answer,
        content_type="data_chart",
    )
    return ChartItem(
        index,
        seed,
        "bar",
        topic,
        proposal,
        _svg(drawn.svg_body),
        drawn.easy,
        drawn.hard,
        drawn.data,
    )


def generate_items(count: int, *, seed: int, offset: int = 0) -> list[ChartItem]:
    """Items `offset` .. `offset + count - 1`; use `offset=HELD_OUT_OFFSET` for held-out ones."""
    return [generate_item(index, seed=seed) for index in range(offset, offset + count)]
