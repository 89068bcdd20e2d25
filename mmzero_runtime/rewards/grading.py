"""Grading answer pairs in killable worker processes, with a typed outcome per comparison.

mathruler's `grade_answer` (the reference's, §5.1) or math-verify (rl-anchors §5) can spin on a
pathological expression with no way to stop it in-process, so every comparison that is not
settled by normalised text runs in a `WorkerPool` under a hard deadline (user-asks §6.2). The
stage grades a whole batch at once: requests are deduplicated and the pool is called once.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mmzero_runtime.rewards.answers import GradeOutcome, normalise_answer, quick_grade
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.spec import GradingSpec
from mmzero_runtime.workers import Limits, TaskResult, WorkerPool

MAX_ANSWER_CHARS = 1000
"""Longer answers are `rejected` before they reach sympy (no boxed answer of a visual question
needs more; long ones are where the parser's worst cases live)."""

GRADER_MEMORY_BYTES = 2 << 30
"""Address-space limit of a grading worker: sympy needs a few hundred MB, runaway integer
arithmetic gets a MemoryError (a `crash` outcome) instead of swapping the node."""


@dataclass(frozen=True)
class GradeRequest:
    """One comparison a reward needs, with the item it belongs to (for failure accounting)."""

    item_id: str
    answer: str
    reference: str


@dataclass(frozen=True)
class GradeResult:
    """The outcome of one request; `detail` says why for a failure."""

    item_id: str
    answer: str
    reference: str
    outcome: GradeOutcome
    detail: str = ""


PairKey = tuple[str, str]


def pair_key(answer: str, reference: str) -> PairKey:
    """Order-free key of a comparison: grading is symmetric (both directions, §5.2)."""
    left, right = normalise_answer(answer) or "", normalise_answer(reference) or ""
    return (left, right) if left <= right else (right, left)


class GradeTable:
    """Outcomes of one graded batch, callable as the `grades` context of votes and rewards.

    >>> table = GradeTable([GradeResult("q1", "0.5", "1/2", "correct")])
    >>> table("1/2", "0.5"), table("0.5", "0.5"), table("none", "0.5")
    ('correct', 'correct', 'wrong')
    """

    def __init__(self, results: Iterable[GradeResult]) -> None:
        self._outcomes = {pair_key(r.answer, r.reference): r.outcome for r in results}

    def __call__(self, answer: str, reference: str) -> GradeOutcome:
        quick = quick_grade(answer, reference)
        if quick is not None:
            return quick
        try:
            return self._outcomes[pair_key(answer, reference)]
        except KeyError:
            raise RewardError(
                f"no grade for answer {answer[:80]!r} against {reference[:80]!r}: the stage must "
                "grade every pair a reward needs before computing it; build the requests with "
                "the reward module's *_grade_requests() helper"
            ) from None


def _settle(request: GradeRequest) -> tuple[GradeOutcome, str] | None:
    """The outcome decided without a worker, or None."""
    quick = quick_grade(request.answer, request.reference)
    if quick is not None:
        return quick, "settled by normalised text"
    longest = max(len(request.answer), len(request.reference))
    if longest > MAX_ANSWER_CHARS:
        return "rejected", f"answer of {longest} characters, over {MAX_ANSWER_CHARS}"
    return None


def outcome_of(result: TaskResult) -> tuple[GradeOutcome, str]:
    """A worker's result as (outcome, detail); every worker failure but a timeout is a crash.

    >>> outcome_of(TaskResult(value=True)), outcome_of(TaskResult(failure="memory", detail="oom"))
    (('correct', ''), ('crash', 'memory: oom'))
    """
    match result.failure:
        case None:
            return ("correct" if result.value else "wrong"), ""
        case "timeout":
            return "timeout", result.detail
        case _:  # crash, memory, error: the grader itself broke on this input
            return "crash", f"{result.failure}: {result.detail}"


class Grader:
    """Grades batches of requests: normalised-equal pairs in-process, the rest in a pool.

    Outcomes are `correct`/`wrong`, or `timeout` (the worker passed `spec.timeout_seconds` and
    was replaced), `crash` (the grader raised, died or ran out of memory) or `rejected` (input
    longer than `MAX_ANSWER_CHARS`). Use as a context manager, or call `close()`.
    """

    def __init__(self, spec: GradingSpec, *, limits: Limits | None = None) -> None:
        if spec.grader == "math_verify" and importlib.util.find_spec("math_verify") is None:
            raise RewardError(
                "grading.grader is 'math_verify' but the math-verify package is not installed; "
                "install the extra (uv sync --extra math-verify) or set grading.grader: mathruler"
            )
        self._spec = spec
        self._limits = limits or Limits(memory_bytes=GRADER_MEMORY_BYTES)
        self._pool: WorkerPool | None = None

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the grading workers, if any were started."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _start(self) -> WorkerPool:
        if self._pool is None:
            match self._spec.grader:
                case "mathruler":
                    initializer = _import_mathruler
                case "math_verify":
                    initializer = _import_math_verify
            self._pool = WorkerPool(
                _grade_task,
                workers=self._spec.workers,
                timeout_seconds=self._spec.timeout_seconds,
                limits=self._limits,
                initializer=initializer,
            )
        return self._pool

    def grade(self, requests: Sequence[GradeRequest]) -> list[GradeResult]:
        """Grade every request (results in request order); each distinct pair is graded once."""
        decided: dict[PairKey, tuple[GradeOutcome, str]] = {}
        to_pool: dict[PairKey, GradeRequest] = {}
        for request in requests:
            key = pair_key(request.answer, request.reference)
            if key in decided or key in to_pool:
                continue
            settled = _settle(request)
            if settled is None:
                to_pool[key] = request
            else:
                decided[key] = settled
        if to_pool:
            payloads = [(self._spec.grader, r.answer, r.reference) for r in to_pool.values()]
            results = self._start().map(payloads)
            decided.update(zip(to_pool, map(outcome_of, results), strict=True))
        return [
            GradeResult(r.item_id, r.answer, r.reference, *decided[pair_key(r.answer, r.reference)])
            for r in requests
        ]


def _import_mathruler() -> None:
    """Worker initializer: pay sympy's import before the first deadline starts."""
    import mathruler.grader  # noqa: F401


def _import_math_verify() -> None:
    """Worker initializer for the math-verify grader."""
    import math_verify  # noqa: F401


def _grade_task(payload: tuple[str, str, str]) -> bool:
    """Worker task: is `answer` equal to `reference` in either direction?"""
    grader, answer, reference = payload
    match grader:
        case "mathruler":
            from mathruler.grader import grade_answer

            return bool(grade_answer(answer, reference) or grade_answer(reference, answer))
        case "math_verify":
            return _math_verify_either_way(answer, reference)
    raise ValueError(f"unknown grader {grader!r}")


def _math_verify_either_way(answer: str, reference: str) -> bool:
    # Timeouts off: math-verify's own use signal.alarm; the pool's deadline is the limit here.
    from math_verify import parse, verify

    def boxed(text: str) -> Any:
        return parse("\\boxed{" + text + "}", parsing_timeout=None)

    given, truth = boxed(answer), boxed(reference)
    return bool(
        verify(truth, given, timeout_seconds=None) or verify(given, truth, timeout_seconds=None)
    )
