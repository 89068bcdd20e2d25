"""Offline silver labels of Solver data and the measurements the Solver-data filter needs.

The previous Solver answers each rendered item's questions K times (reference §2.5 step 4); the
majority of the hard answers is the label the Solver is trained against (§5.5), its share is the
hard consistency, and the easy answers give the easy score (§6). `filters.solver_data_filter`
applies the thresholds to what `label_items` measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mmzero_runtime.rewards.answers import (
    Grades,
    grade_either_way,
    majority_vote,
    quick_grade,
    vote_pairs,
)
from mmzero_runtime.rewards.grading import GradeRequest
from mmzero_runtime.spec import FiltersSpec


@dataclass(frozen=True)
class SolverCandidate:
    """One rendered item with the previous Solver's answers on both questions, in sample order."""

    item_id: str
    easy_answer: str
    """The Proposer's a_e (used by the `accuracy` easy score)."""
    easy_answers: tuple[str | None, ...]
    hard_answers: tuple[str | None, ...]
    """The K (label_samples) answers whose vote is the label and the hard consistency."""


@dataclass(frozen=True)
class ItemLabel:
    """What the previous Solver's answers say about one item."""

    label: str | None
    """Majority of the hard answers; None when none of them is a vote."""
    easy_score: float | None
    """Easy self-consistency, or accuracy against a_e (FiltersSpec.easy_filter); None when every
    easy grading failed."""
    hard_consistency: float
    """Share of the label's group among the hard votes (0 with no vote)."""
    vote_margin: float = 0.0
    """Lead of the label's group over the runner-up, as a share of the hard votes."""


def _easy_score(candidate: SolverCandidate, spec: FiltersSpec, grades: Grades) -> Fraction | None:
    match spec.easy_filter:
        case "self_consistency":
            vote = majority_vote(candidate.easy_answers, grades=grades)
            return Fraction(vote.votes, vote.valid) if vote.valid else Fraction(0)
        case "accuracy":
            outcomes = [
                grade_either_way(answer, candidate.easy_answer, grades)
                for answer in candidate.easy_answers
            ]
            graded = sum(1 for outcome in outcomes if outcome in ("correct", "wrong"))
            return Fraction(outcomes.count("correct"), graded) if graded else None


def label_items(
    candidates: Sequence[SolverCandidate], *, spec: FiltersSpec, grades: Grades
) -> dict[str, ItemLabel]:
    """Label and measure each item, by id.

    Non-answers never vote, so an item whose hard answers are all "None" has no label (fixing
    §15, where a lower-case "none" label was kept).

    >>> from mmzero_runtime.rewards.answers import text_grade
    >>> item = SolverCandidate("s1", "3", ("3", "3", "4", "3"), ("a", "a", "b", "c"))
    >>> label_items([item], spec=FiltersSpec(), grades=text_grade)["s1"]
    ItemLabel(label='a', easy_score=0.75, hard_consistency=0.5, vote_margin=0.25)
    """
    labels: dict[str, ItemLabel] = {}
    for candidate in candidates:
        vote = majority_vote(candidate.hard_answers, grades=grades)
        easy = _easy_score(candidate, spec, grades)
        labels[candidate.item_id] = ItemLabel(
            label=vote.label,
            easy_score=None if easy is None else float(easy),
            hard_consistency=vote.consistency,
            vote_margin=vote.margin,
        )
    return labels


def label_grade_requests(
    candidates: Sequence[SolverCandidate], *, spec: FiltersSpec
) -> list[GradeRequest]:
    """Comparisons `label_items` will look up under `spec.easy_filter`."""
    requests: list[GradeRequest] = []
    for c in candidates:
        requests += [GradeRequest(c.item_id, a, b) for a, b in vote_pairs(c.hard_answers)]
        if spec.easy_filter == "self_consistency":
            requests += [GradeRequest(c.item_id, a, b) for a, b in vote_pairs(c.easy_answers)]
        else:
            requests += [
                GradeRequest(c.item_id, answer, c.easy_answer)
                for answer in c.easy_answers
                if answer is not None and quick_grade(answer, c.easy_answer) is None
            ]
    return requests
