"""Grading through the real WorkerPool: verdicts, a hanging comparison, failure accounting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import Grader, GradeRequest, GradeTable
from mmzero_runtime.rewards.outcomes import FailureLedger
from mmzero_runtime.rewards.solver import SolverResponse, solver_grade_requests, solver_rewards
from mmzero_runtime.spec import GradingSpec, SolverRewardSpec

pytestmark = pytest.mark.integration

HANG = "9**9**9"
"""mathruler lets `**` through its "bad input" screen; sympy then builds 9^387420489, which
takes far longer than any deadline here (9**9**7 alone takes about 2 s)."""


@pytest.fixture(scope="module")
def grader() -> Iterator[Grader]:
    # 2 s deadline: ordinary comparisons take milliseconds, the hang never finishes.
    with Grader(GradingSpec(timeout_seconds=2.0, workers=2)) as pool:
        yield pool


@pytest.mark.parametrize(
    ("answer", "reference", "outcome"),
    [
        ("0.5", "\\frac{1}{2}", "correct"),  # sympy equivalence (§5.1)
        ("1 / 2", "1/2", "correct"),  # spaces are the grader's business, not stripped (§13.13)
        ("3.0", "3", "correct"),  # float form of an integer
        ("10\\%", "10", "correct"),  # percent sign
        ("x+1", "1+x", "correct"),  # symbolic equality
        ("3", "4", "wrong"),  # different numbers
        ("\\frac{2}{4}", "0.5", "correct"),  # only one direction holds: either way is enough
    ],
    ids=["frac", "spaced-fraction", "float-int", "percent", "symbolic", "wrong", "one-way"],
)
def test_grader_mathruler_pairs_give_verdict(
    grader: Grader, answer: str, reference: str, outcome: str
) -> None:
    (result,) = grader.grade([GradeRequest("q", answer, reference)])
    assert result.outcome == outcome


def test_grader_hanging_pair_times_out_and_later_pairs_still_grade(grader: Grader) -> None:
    requests = [
        GradeRequest("q-hang", HANG, "x"),
        GradeRequest("q-ok", "0.5", "1/2"),
        GradeRequest("q-hang-again", "x", HANG),  # the same pair, reversed: graded once
    ]
    results = grader.grade(requests)
    assert [r.outcome for r in results] == ["timeout", "correct", "timeout"]
    assert "no result within 2 s" in results[0].detail
    (after,) = grader.grade([GradeRequest("q-next", "2", "2.00")])  # the pool recovered
    assert after.outcome == "correct"


def test_grader_failures_reach_ledger_and_fail_the_batch(grader: Grader) -> None:
    # A Solver batch: 2 answers hang, 1 is graded. Their rewards are None (unknown), the
    # ledger counts 2 timeouts of 3 comparisons, and the share check stops the stage.
    responses = [
        SolverResponse(f"q{i}", answer, True) for i, answer in enumerate([HANG, "1/2", HANG])
    ]
    labels = {"q0": "x", "q1": "0.5", "q2": "y"}
    results = grader.grade(solver_grade_requests(responses, labels))
    ledger = FailureLedger()
    ledger.record_grades(results)
    rewards = solver_rewards(
        responses, labels=labels, spec=SolverRewardSpec(), grades=GradeTable(results)
    )
    assert [r.total for r in rewards] == [None, 1.0, None]
    assert ledger.counts() == {("grading", "timeout"): 2}
    with pytest.raises(
        RewardError, match=r"(?s)grading: 2 of 3 failed .*timeout 2.*q0 \(no result"
    ):
        ledger.check(GradingSpec().max_failure_share)
