"""The Solver reward (reference §5.5): 0.9 · accuracy against a majority-vote label + 0.1 · format.

The label is the offline majority of the previous Solver's answers (the reference code) or, in
`online_majority` mode, the majority over each GRPO group's own rollouts (TTRL, the paper):
`group_labels` computes those. The format check and box extraction belong to `roles.solver`;
this module takes their results.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmzero_runtime.rewards.answers import (
    Grades,
    grade_either_way,
    majority_vote,
    quick_grade,
    vote_pairs,
)
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeRequest
from mmzero_runtime.rewards.judgement import exact
from mmzero_runtime.spec import SolverRewardSpec


@dataclass(frozen=True)
class SolverResponse:
    """One Solver rollout: the question it answers, its boxed answer and its format verdict."""

    item_id: str
    """The question's id; a GRPO group is the responses sharing it."""
    answer: str | None
    """Content of the last `\\boxed{}`; None when there is no box."""
    formatted: bool
    """The response matches `<think>...</think>` then `\\boxed{...}` (roles.solver)."""


@dataclass(frozen=True)
class SolverReward:
    """Every term of one rollout's reward."""

    item_id: str
    total: float | None
    """(1 - w) · accuracy + w · format; None when the grading of the answer failed."""
    accuracy: float | None
    format: float


def group_labels(responses: Sequence[SolverResponse], *, grades: Grades) -> dict[str, str | None]:
    """`online_majority` labels: per question id, the vote over its own rollouts (in order).

    >>> from mmzero_runtime.rewards.answers import text_grade
    >>> group_labels([SolverResponse("q", "4", True), SolverResponse("q", None, True),
    ...               SolverResponse("q", "4", False), SolverResponse("q", "5", True)],
    ...              grades=text_grade)
    {'q': '4'}
    """
    answers: dict[str, list[str | None]] = defaultdict(list)
    for response in responses:
        answers[response.item_id].append(response.answer)
    return {item: majority_vote(group, grades=grades).label for item, group in answers.items()}


def _accuracy(answer: str | None, label: str | None, grades: Grades) -> int | None:
    """1 / 0 / None (grading failed). No box never matches, not even a label "None" (§15)."""
    match grade_either_way(answer, label, grades):
        case "correct":
            return 1
        case "wrong":
            return 0
        case _:
            return None


def solver_rewards(
    responses: Sequence[SolverResponse],
    *,
    labels: Mapping[str, str | None],
    spec: SolverRewardSpec,
    grades: Grades,
) -> list[SolverReward]:
    """Rewards of a Solver batch, in the order of `responses` (§5.5).

    Accuracy is graded in both directions, as every other comparison here (the reference graded
    this one in one direction only). A label of None (no vote) gives accuracy 0.

    >>> from mmzero_runtime.rewards.answers import text_grade
    >>> batch = [SolverResponse("q", "4", True), SolverResponse("q", None, True),
    ...          SolverResponse("q", "4", False)]
    >>> rewards = solver_rewards(batch, labels={"q": "4"}, spec=SolverRewardSpec(),
    ...                          grades=text_grade)
    >>> [r.total for r in rewards]
    [1.0, 0.1, 0.9]
    """
    missing = sorted({r.item_id for r in responses} - set(labels))
    if missing:
        raise RewardError(
            f"no label for question ids {missing[:5]}: every question needs a label "
            "(offline: the previous Solver's vote; online_majority: group_labels())"
        )
    weight = exact(spec.format_weight)
    rewards = []
    for response in responses:
        accuracy = _accuracy(response.answer, labels[response.item_id], grades)
        fmt = 1.0 if response.formatted else 0.0
        total = None if accuracy is None else float((1 - weight) * accuracy + weight * int(fmt))
        accuracy_value = None if accuracy is None else float(accuracy)
        rewards.append(SolverReward(response.item_id, total, accuracy_value, fmt))
    return rewards


def solver_grade_requests(
    responses: Sequence[SolverResponse], labels: Mapping[str, str | None]
) -> list[GradeRequest]:
    """Comparisons `solver_rewards` will look up (pass the labels it will use)."""
    return [
        GradeRequest(r.item_id, r.answer, label)
        for r in responses
        if r.answer is not None
        and (label := labels.get(r.item_id)) is not None
        and quick_grade(r.answer, label) is None
    ]


def group_label_grade_requests(responses: Sequence[SolverResponse]) -> list[GradeRequest]:
    """Comparisons `group_labels` will look up."""
    answers: dict[str, list[str | None]] = defaultdict(list)
    for response in responses:
        answers[response.item_id].append(response.answer)
    return [
        GradeRequest(item, a, b) for item, group in answers.items() for a, b in vote_pairs(group)
    ]
