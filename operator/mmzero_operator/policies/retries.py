"""What one stage whose inputs are done needs now: start, wait, retry after a backoff, or fail.

A stage is done when its manifest is in the store, never because its Job succeeded: a Job that
succeeds without a manifest fails its attempt once `manifest_grace_seconds` have passed.
Failed attempts are retried as new Jobs (`-a<N>`) after an exponential backoff, up to
`cluster.stage_attempts`; an attempt failed by the pod failure policy (exit status 2: a usage
or spec error) fails the run at once, since retrying cannot help. A pod that cannot start
fails the run at `pending_deadline_seconds` (an invalid image name: at once).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmzero_operator import conditions as reasons
from mmzero_operator.observe import JobState, PodFact
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import Stage

BACKOFF_CAP_SECONDS = 1800
DETERMINISTIC_REASONS = frozenset({"PodFailurePolicy"})
"""Job failure reasons that another attempt cannot fix."""
DETERMINISTIC_BLOCKS = frozenset({reasons.INVALID_IMAGE})
"""Reasons a pod cannot start that waiting cannot fix."""


@dataclass(frozen=True)
class Step:
    """What one stage needs now."""

    start: int | None = None
    """The attempt to create now."""
    running: bool = False
    """The stage counts as running (its servers are wanted, the status names it)."""
    blocked: PodFact | None = None
    """A pod of the stage that cannot start yet."""
    failure: str | None = None
    """Why the run fails."""
    wake: float | None = None
    """Seconds until this stage needs another look."""


def backoff_seconds(spec: RunSpec, failed_attempt: int) -> float:
    """Wait before the attempt after `failed_attempt`: the base, doubled per attempt, capped."""
    base = spec.cluster.retry_backoff_seconds
    return float(min(base * 2 ** (failed_attempt - 1), BACKOFF_CAP_SECONDS))


def advance(spec: RunSpec, stage: Stage, job: JobState | None, now: float) -> Step:
    """Start, wait for, or retry `stage`, whose newest attempt is `job`."""
    if job is None:
        return Step(start=1, running=True)
    if job.active:
        return _unfinished(spec, stage, job, now)
    finished = job.finished_at if job.finished_at is not None else now
    reason, message = job.reason, job.message
    ended = next((p for p in job.pods if p.failed), None)
    if ended is not None:
        message = f"{message}; {ended.detail}" if message else ended.detail
    if job.outcome == "succeeded":
        grace_ends = finished + spec.cluster.manifest_grace_seconds
        if now < grace_ends:  # the manifest may still be on its way to the store
            return Step(running=True, wake=grace_ends - now)
        reason = "NoManifest"
        message = (
            f"Job {job.name} succeeded but the stage wrote no manifest within "
            f"{spec.cluster.manifest_grace_seconds} s; see the stage's log in the store"
        )
    if reason in DETERMINISTIC_REASONS or job.attempt >= spec.cluster.stage_attempts:
        tried = f"after {job.attempt} attempt(s)"
        return Step(
            failure=f"stage {stage.name} failed {tried}: {reason}: {message} (Job {job.name})"
        )
    retry_at = finished + backoff_seconds(spec, job.attempt)
    if now >= retry_at:
        return Step(start=job.attempt + 1, running=True)
    return Step(wake=retry_at - now)


def _unfinished(spec: RunSpec, stage: Stage, job: JobState, now: float) -> Step:
    """A waiting or running attempt: fine, blocked until its deadline, or failed by it."""
    blocked = next((p for p in job.pods if p.blocked), None)
    if blocked is None:
        return Step(running=True)
    since = blocked.since if blocked.since is not None else now
    deadline = since + spec.cluster.pending_deadline_seconds
    if blocked.blocked not in DETERMINISTIC_BLOCKS and now < deadline:
        return Step(running=True, blocked=blocked, wake=deadline - now)
    return Step(failure=f"stage {stage.name} cannot start: {blocked.why_blocked} (Job {job.name})")
