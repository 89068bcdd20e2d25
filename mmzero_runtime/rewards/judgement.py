"""What the frozen Solver made of one rendered image: solvability, consistency, difficulty.

Shared by the Proposer reward (§5.3 steps 4-5) and the Coder reward (§5.4). Values are exact
fractions of sample counts, so thresholds are compared without float drift (§15).
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
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeRequest


@dataclass(frozen=True)
class SolverAnswers:
    """The K boxed answers of the frozen Solver on one image, in sample order (None: no box)."""

    easy: tuple[str | None, ...]
    """Answers to the easy question."""
    hard: tuple[str | None, ...]
    """Answers to the hard question."""


@dataclass(frozen=True)
class ImageScore:
    """One image's terms."""

    solvability: Fraction
    """s: share of the easy answers graded equal to the Proposer's easy answer."""
    consistency: Fraction
    """c: the hard answers' majority share among their votes (0 with no vote)."""

    @property
    def difficulty(self) -> Fraction:
        """g(c) = min(c, 1 - c), the Goldilocks difficulty (§5.2)."""
        return goldilocks(self.consistency)


def goldilocks(consistency: Fraction) -> Fraction:
    """g(c) = min(c, 1 - c): 0.5 at c = 1/2, 0 when the Solver always (or never) agrees.

    >>> goldilocks(Fraction(4, 5)), goldilocks(Fraction(1, 2))
    (Fraction(1, 5), Fraction(1, 2))
    """
    return min(consistency, 1 - consistency)


def exact(value: float) -> Fraction:
    """The decimal a spec constant was written as (0.15 -> 3/20), for exact threshold tests."""
    return Fraction(repr(value))


def _check_counts(item_id: str, answers: SolverAnswers, samples: int) -> None:
    if len(answers.easy) != samples or len(answers.hard) != samples:
        raise RewardError(
            f"item {item_id}: got {len(answers.easy)} easy and {len(answers.hard)} hard Solver "
            f"answers, expected {samples} each (solver_samples); a short or long answer list "
            "means responses were joined to the wrong item or lost; send exactly K per image"
        )


def score_image(
    item_id: str, answers: SolverAnswers, easy_answer: str, *, samples: int, grades: Grades
) -> ImageScore | None:
    """Score one image; None when no easy answer could be graded (all comparisons failed).

    s = #correct / #graded, where a missing box is graded wrong (so it counts in the
    denominator, §5.3 step 4) and a failed grading counts in neither (it is not a verdict).

    >>> from mmzero_runtime.rewards.answers import text_grade
    >>> score = score_image("p1/0", SolverAnswers(easy=("3", "3", None, "4"),
    ...     hard=("a", "b", "a", "c")), "3", samples=4, grades=text_grade)
    >>> score.solvability, score.consistency, score.difficulty
    (Fraction(1, 2), Fraction(1, 2), Fraction(1, 2))
    """
    _check_counts(item_id, answers, samples)
    outcomes = [grade_either_way(answer, easy_answer, grades) for answer in answers.easy]
    graded = sum(1 for outcome in outcomes if outcome in ("correct", "wrong"))
    if graded == 0:
        return None
    solvability = Fraction(outcomes.count("correct"), graded)
    vote = majority_vote(answers.hard, grades=grades)
    consistency = Fraction(vote.votes, vote.valid) if vote.valid else Fraction(0)
    return ImageScore(solvability=solvability, consistency=consistency)


def image_grade_requests(
    item_id: str, answers: SolverAnswers, easy_answer: str
) -> list[GradeRequest]:
    """Comparisons `score_image` needs graded beyond normalised text."""
    easy = [
        GradeRequest(item_id, answer, easy_answer)
        for answer in answers.easy
        if answer is not None and quick_grade(answer, easy_answer) is None
    ]
    hard = [GradeRequest(item_id, a, b) for a, b in vote_pairs(answers.hard)]
    return easy + hard


def mean(values: Sequence[Fraction]) -> Fraction:
    """Exact mean; 0 for no values."""
    return sum(values, Fraction(0)) / len(values) if values else Fraction(0)
