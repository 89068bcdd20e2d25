"""The retry policy: start, wait, retry after a capped backoff, or fail, per stage."""

from __future__ import annotations

from typing import Any

import pytest

from mmzero_operator.observe import JobState, PodFact
from mmzero_operator.policies.retries import BACKOFF_CAP_SECONDS, Step, advance, backoff_seconds
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import all_stages

NOW = 1_800_000_000.0
SPEC = RunSpec(
    iterations=1,
    cluster={
        "stage_attempts": 3,
        "retry_backoff_seconds": 60,
        "manifest_grace_seconds": 60,
        "pending_deadline_seconds": 600,
    },
)
STAGE = all_stages(SPEC)[0]


def _job(
    outcome: Any, attempt: int = 1, reason: str = "", at: float = NOW, *pods: PodFact
) -> JobState:
    return JobState("j", STAGE.name, attempt, outcome, reason, finished_at=at, pods=pods)


@pytest.mark.parametrize(
    ("job", "step"),
    [
        # no Job yet: the first attempt
        pytest.param(None, Step(start=1, running=True), id="new"),
        # running with healthy pods
        pytest.param(_job("running"), Step(running=True), id="running"),
        # pending on the scheduler: wait until the deadline
        pytest.param(
            _job("waiting", 1, "", NOW, PodFact("p", "Unschedulable", "", NOW - 100)),
            Step(running=True, blocked=PodFact("p", "Unschedulable", "", NOW - 100), wake=500),
            id="blocked",
        ),
        # succeeded a moment ago: the manifest may be on its way
        pytest.param(_job("succeeded", 1, "", NOW - 10), Step(running=True, wake=50), id="grace"),
        # failed a moment ago: retry after the backoff
        pytest.param(
            _job("failed", 1, "BackoffLimitExceeded", NOW - 10), Step(wake=50), id="backoff"
        ),
        # failed long ago: the next attempt
        pytest.param(
            _job("failed", 2, "BackoffLimitExceeded", NOW - 500),
            Step(start=3, running=True),
            id="retry",
        ),
    ],
)
def test_advance_starts_waits_or_retries(job: JobState | None, step: Step) -> None:
    assert advance(SPEC, STAGE, job, NOW) == step


@pytest.mark.parametrize(
    ("job", "says"),
    [
        # the last attempt failed
        pytest.param(
            _job("failed", 3, "BackoffLimitExceeded"), "failed after 3 attempt(s)", id="attempts"
        ),
        # a usage error: retrying cannot help
        pytest.param(_job("failed", 1, "PodFailurePolicy"), "PodFailurePolicy", id="usage"),
        # an invalid image: waiting cannot help
        pytest.param(
            _job("waiting", 1, "", NOW, PodFact("p", "InvalidImage", "bad", NOW)),
            "cannot start: InvalidImage: pod p: bad",
            id="image",
        ),
        # succeeded, but no manifest after the grace
        pytest.param(_job("succeeded", 3, "", NOW - 100), "NoManifest", id="manifest"),
    ],
)
def test_advance_fails_the_run_when_another_attempt_cannot_help(job: JobState, says: str) -> None:
    step = advance(SPEC, STAGE, job, NOW)
    assert step.failure is not None and says in step.failure and step.start is None


def test_backoff_doubles_per_attempt_up_to_its_cap() -> None:
    assert [backoff_seconds(SPEC, n) for n in (1, 2, 3)] == [60, 120, 240]
    assert backoff_seconds(SPEC, 30) == BACKOFF_CAP_SECONDS
