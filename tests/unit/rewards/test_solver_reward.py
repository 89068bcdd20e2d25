"""The Solver reward and online group labels (reference §5.5, §15)."""

from __future__ import annotations

import pytest

from mmzero_runtime.rewards.answers import text_grade
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeResult, GradeTable
from mmzero_runtime.rewards.solver import (
    SolverResponse,
    group_label_grade_requests,
    group_labels,
    solver_grade_requests,
    solver_rewards,
)
from mmzero_runtime.spec import SolverRewardSpec

SPEC = SolverRewardSpec()


@pytest.mark.parametrize(
    ("answer", "formatted", "label", "total", "accuracy"),
    [
        ("4", True, "4", 1.0, 1.0),  # 0.9 * 1 + 0.1 * 1
        ("4", False, "4", 0.9, 1.0),  # 0.9 * 1 + 0.1 * 0
        ("5", True, "4", 0.1, 0.0),  # 0.9 * 0 + 0.1 * 1
        (None, True, "None", 0.1, 0.0),  # §15: no box against label "None" is not correct
        (None, False, "4", 0.0, 0.0),  # no box, bad format: nothing
        ("4", True, None, 0.1, 0.0),  # no label (no vote): never correct
        (" Four ", True, "four", 1.0, 1.0),  # normalised text matches
    ],
    ids=["right", "right-bad-format", "wrong", "no-box-none-label", "nothing", "no-label", "text"],
)
def test_solver_reward_table_gives_hand_total(
    answer: str | None, formatted: bool, label: str | None, total: float, accuracy: float
) -> None:
    batch = [SolverResponse("q", answer, formatted)]
    (reward,) = solver_rewards(batch, labels={"q": label}, spec=SPEC, grades=text_grade)
    assert (reward.total, reward.accuracy) == pytest.approx((total, accuracy))


def test_solver_reward_reverse_grade_correct_scores_one() -> None:
    grades = GradeTable([GradeResult("q", "0.5", "1/2", "correct")])
    batch = [SolverResponse("q", "1/2", True)]
    assert solver_rewards(batch, labels={"q": "0.5"}, spec=SPEC, grades=grades)[0].total == 1.0


def test_solver_reward_grading_failure_is_none() -> None:
    grades = GradeTable([GradeResult("q", "9**9**9", "4", "timeout")])
    batch = [SolverResponse("q", "9**9**9", True)]
    (reward,) = solver_rewards(batch, labels={"q": "4"}, spec=SPEC, grades=grades)
    assert (reward.total, reward.accuracy, reward.format) == (None, None, 1.0)


def test_solver_reward_missing_label_raises() -> None:
    with pytest.raises(RewardError, match=r"no label for question ids \['q2'\]"):
        solver_rewards([SolverResponse("q2", "4", True)], labels={}, spec=SPEC, grades=text_grade)


def test_solver_reward_custom_format_weight_scales_format() -> None:
    # format_weight 0.3: 0.7 * 0 + 0.3 * 1
    spec = SolverRewardSpec(format_weight=0.3)
    batch = [SolverResponse("q", "5", True)]
    assert solver_rewards(batch, labels={"q": "4"}, spec=spec, grades=text_grade)[0].total == 0.3


@pytest.mark.parametrize(
    ("answers", "label"),
    [
        (["4", "5", "5", "4"], "4"),  # tie 2-2: the answer seen first wins
        ([None, "None", ""], None),  # a group with no vote has no label
        (["7"], "7"),  # a group of one
    ],
    ids=["tie", "no-vote", "one"],
)
def test_group_labels_each_group_votes_alone(answers: list[str | None], label: str | None) -> None:
    responses = [SolverResponse("q", a, True) for a in answers] + [SolverResponse("r", "1", True)]
    assert group_labels(responses, grades=text_grade) == {"q": label, "r": "1"}


def test_group_labels_online_mode_rewards_majority() -> None:
    # 8 rollouts: 5 say "4" -> label "4"; the three "6" rollouts get only the format term.
    responses = [SolverResponse("q", "4", True)] * 5 + [SolverResponse("q", "6", True)] * 3
    labels = group_labels(responses, grades=text_grade)
    totals = [
        r.total for r in solver_rewards(responses, labels=labels, spec=SPEC, grades=text_grade)
    ]
    assert totals == pytest.approx([1.0] * 5 + [0.1] * 3)


def test_solver_grade_requests_settled_pairs_left_out() -> None:
    responses = [SolverResponse("q", a, True) for a in ("4", "4.0", None, "none")]
    assert [(r.answer, r.reference) for r in solver_grade_requests(responses, {"q": "4"})] == [
        ("4.0", "4")
    ]
    assert len(group_label_grade_requests(responses)) == 1  # the pair ("4", "4.0")
