"""Failure accounting: every render, generation or grading that failed, with reason and item id.

A grader error that quietly becomes a reward of 0 poisons a run (user-asks §6.1; reference
§13.6, §13.10). Stages record each attempt here; `check()` fails the stage loudly when the share
of failures of any source passes `GradingSpec.max_failure_share`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeResult

Source = Literal["render", "generation", "grading"]
"""What failed: a render in the sandbox, a frozen role's generation, or an answer comparison."""

EXAMPLES = 3
"""Example items named per reason in an error message."""

REMEDIES = {
    "timeout": "raise the limit (grading.timeout_seconds or render.timeout_seconds) or inspect "
    "the example items' inputs for pathological expressions or SVG",
    "crash": "read the example items' details; a grader or renderer that dies on ordinary input "
    "points to a broken install or a memory limit that is too low",
    "memory": "raise render.memory_bytes, or inspect the example items for oversized output",
    "rejected": "the inputs exceeded a size limit; check the example items' answers or SVG",
    "error": "read the example items' details; the task raised on their input",
}
"""What to do, per failure reason; other reasons get a generic hint."""


@dataclass(frozen=True)
class Failure:
    """One failed attempt."""

    source: Source
    item_id: str
    reason: str
    detail: str = ""


class FailureLedger:
    """Counts attempts and failures per source; `check()` raises past the allowed share.

    Record only outcomes that say nothing about the model: a wrong answer or an SVG that does
    not parse is an ok attempt (it is the reward's signal), a timeout or a crash is a failure.

    >>> ledger = FailureLedger()
    >>> ledger.record("grading", "q1")
    >>> ledger.record("grading", "q2", reason="timeout", detail="no result within 10 s")
    >>> ledger.share("grading"), ledger.counts()
    (0.5, {('grading', 'timeout'): 1})
    """

    def __init__(self) -> None:
        self._attempts: Counter[Source] = Counter()
        self.failures: list[Failure] = []
        """Every failure recorded, in order."""

    def record(
        self, source: Source, item_id: str, reason: str | None = None, detail: str = ""
    ) -> None:
        """Count one attempt of `item_id`; `reason` None means it succeeded."""
        self._attempts[source] += 1
        if reason is not None:
            self.failures.append(Failure(source, item_id, reason, detail))

    def record_grades(self, results: Iterable[GradeResult]) -> None:
        """Count each comparison; every outcome but correct/wrong is a failure."""
        for result in results:
            ok = result.outcome in ("correct", "wrong")
            self.record("grading", result.item_id, None if ok else result.outcome, result.detail)

    def attempts(self, source: Source) -> int:
        """Attempts recorded for `source`."""
        return self._attempts[source]

    def share(self, source: Source) -> float:
        """Failed share of the attempts of `source` (0 when there were none)."""
        attempts = self._attempts[source]
        failed = sum(1 for f in self.failures if f.source == source)
        return failed / attempts if attempts else 0.0

    def counts(self) -> dict[tuple[Source, str], int]:
        """Failures per (source, reason), for metrics (`mmzero_..._failures_total`)."""
        return dict(Counter((f.source, f.reason) for f in self.failures))

    def check(self, max_failure_share: float) -> None:
        """Raise RewardError naming counts, reasons, example items and remedies when the failed
        share of any source is above `max_failure_share` (GradingSpec.max_failure_share)."""
        problems = [
            self._describe(source, max_failure_share)
            for source in sorted(self._attempts)
            if self.share(source) > max_failure_share
        ]
        if problems:
            raise RewardError(
                "too many failed outcomes in this batch; its rewards would be silent zeros, so "
                "the stage stops:\n" + "\n".join(problems)
            )

    def _describe(self, source: Source, max_failure_share: float) -> str:
        failures = [f for f in self.failures if f.source == source]
        reasons = Counter(f.reason for f in failures).most_common()
        lines = [
            f"  {source}: {len(failures)} of {self._attempts[source]} failed "
            f"({len(failures) / self._attempts[source]:.1%}), above max_failure_share "
            f"{max_failure_share:g}; by reason: "
            + ", ".join(f"{reason} {count}" for reason, count in reasons)
        ]
        for reason, _ in reasons:
            examples = [f for f in failures if f.reason == reason][:EXAMPLES]
            named = "; ".join(f"{f.item_id} ({f.detail[:120] or 'no detail'})" for f in examples)
            remedy = REMEDIES.get(reason, "read the example items' details")
            lines.append(f"    {reason}: e.g. {named}. To fix: {remedy}.")
        return "\n".join(lines)
