"""Failure accounting and the failure-share check (user-asks §6.1)."""

from __future__ import annotations

import pytest

from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeResult
from mmzero_runtime.rewards.outcomes import FailureLedger


def ledger_with(ok: int, failures: list[tuple[str, str]]) -> FailureLedger:
    """A grading ledger with `ok` good comparisons and (item, reason) failures."""
    ledger = FailureLedger()
    for index in range(ok):
        ledger.record("grading", f"ok{index}")
    for item_id, reason in failures:
        ledger.record("grading", item_id, reason, detail=f"{reason} on {item_id}")
    return ledger


def test_ledger_record_grades_counts_only_failures() -> None:
    ledger = FailureLedger()
    ledger.record_grades(
        [
            GradeResult("q1", "3", "4", "wrong"),  # a verdict: ok attempt
            GradeResult("q2", "3", "3.0", "correct"),  # a verdict: ok attempt
            GradeResult("q3", "9**9**9", "x", "timeout", "no result within 10 s"),
        ]
    )
    assert (ledger.attempts("grading"), ledger.counts()) == (3, {("grading", "timeout"): 1})
    assert ledger.failures[0].item_id == "q3"


@pytest.mark.parametrize(
    ("ok", "failed", "raises"),
    [
        (8, 2, False),  # 2/10 = 0.2: at the limit, not past it
        (7, 3, True),  # 3/10 = 0.3 > 0.2
        (0, 0, False),  # nothing attempted: nothing to judge
    ],
    ids=["at-limit", "past-limit", "empty"],
)
def test_ledger_check_share_past_limit_raises(ok: int, failed: int, raises: bool) -> None:
    ledger = ledger_with(ok, [(f"q{i}", "timeout") for i in range(failed)])
    if raises:
        with pytest.raises(RewardError):
            ledger.check(0.2)
    else:
        ledger.check(0.2)


def test_ledger_check_message_names_counts_reasons_items_and_remedy() -> None:
    ledger = ledger_with(1, [("q1", "timeout"), ("q2", "timeout"), ("q3", "crash")])
    with pytest.raises(RewardError) as error:
        ledger.check(0.2)
    message = str(error.value)
    assert "grading: 3 of 4 failed (75.0%), above max_failure_share 0.2" in message
    assert "by reason: timeout 2, crash 1" in message  # worst reason first
    assert "q1 (timeout on q1); q2 (timeout on q2)" in message  # example items with details
    assert "To fix: raise the limit (grading.timeout_seconds" in message


def test_ledger_check_one_source_failing_names_only_it() -> None:
    # Renders all fine, gradings half failed: only grading is named.
    ledger = ledger_with(1, [("q1", "crash")])
    for index in range(10):
        ledger.record("render", f"svg{index}")
    with pytest.raises(RewardError) as error:
        ledger.check(0.2)
    assert "grading: 1 of 2" in str(error.value) and "render:" not in str(error.value)
