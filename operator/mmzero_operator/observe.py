"""Cluster objects as facts: what the reconcile core needs of a run's Jobs, pods and servers.

Pure: these read the plain JSON the API returns (`kube.py` lists it) and keep only what a
decision turns on, so the core is tested with small facts instead of whole objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mmzero_operator import conditions as reasons
from mmzero_operator.names import LABEL_ATTEMPT, LABEL_ITERATION, LABEL_SERVER, LABEL_STAGE

Outcome = Literal["waiting", "running", "succeeded", "failed"]

BLOCKING_WAIT_REASONS = {
    "ErrImagePull": reasons.IMAGE_PULL,
    "ImagePullBackOff": reasons.IMAGE_PULL,
    "InvalidImageName": reasons.INVALID_IMAGE,
    "CreateContainerConfigError": reasons.CONTAINER_CONFIG,
}
"""Container waiting reasons that mean the pod cannot start by itself, by class."""


@dataclass(frozen=True)
class PodFact:
    """What one stage pod says about why its attempt is stuck or how it ended."""

    name: str
    blocked: str | None = None
    """`ImagePull`, `InvalidImage`, `ContainerConfig` or `Unschedulable` while it cannot start."""
    detail: str = ""
    """The scheduler's or kubelet's message, or how the container ended."""
    since: float | None = None
    failed: bool = False
    restarted: bool = False
    """The container was restarted (a server's Deployment pod); `detail` says how it ended."""

    @property
    def why_blocked(self) -> str:
        """`<class>: pod <name>: <detail>`, for a message."""
        return f"{self.blocked}: pod {self.name}: {self.detail}"


def timestamp(text: str | None) -> float | None:
    """A metav1.Time as Unix time (None for none)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_fact(pod: Mapping[str, Any]) -> PodFact:
    """Classify a pod: blocked before running, failed (exit code, OOMKilled, message), or fine."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    created = timestamp(pod["metadata"].get("creationTimestamp"))
    for condition in status.get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
            since = timestamp(condition.get("lastTransitionTime")) or created
            return PodFact(name, reasons.UNSCHEDULABLE, condition.get("message", ""), since)
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in BLOCKING_WAIT_REASONS:
            image = container.get("image")
            detail = f"{waiting['reason']}: {waiting.get('message', '')} (image {image})"
            return PodFact(name, BLOCKING_WAIT_REASONS[waiting["reason"]], detail, created)
        ended = state.get("terminated") or {}
        if ended and ended.get("exitCode", 0) != 0:
            return PodFact(name, detail=_exit(name, ended), failed=True)
        before = (container.get("lastState") or {}).get("terminated") or {}
        if container.get("restartCount", 0) and before:
            restarts = f"restarted {container['restartCount']} time(s); last: "
            return PodFact(name, detail=restarts + _exit(name, before), restarted=True)
    return PodFact(name)


def _exit(pod: str, ended: Mapping[str, Any]) -> str:
    """`pod P exited 137 (OOMKilled): <last log lines>`."""
    message = (ended.get("message") or "").strip().splitlines()[-5:]
    detail = f"pod {pod} exited {ended.get('exitCode')} ({ended.get('reason', 'Error')})"
    return detail + (": " + " | ".join(message) if message else "")


@dataclass(frozen=True)
class JobState:
    """What the reconcile core needs of one stage Job."""

    name: str
    stage: str
    attempt: int
    outcome: Outcome
    reason: str = ""
    message: str = ""
    finished_at: float | None = None
    suspended: bool = False
    pods: tuple[PodFact, ...] = ()

    @property
    def active(self) -> bool:
        """Not finished: waiting for its pods (or its queue) or running."""
        return self.outcome in ("waiting", "running")


def job_state(job: Mapping[str, Any], pods: Iterable[PodFact] = ()) -> JobState | None:
    """The state of a Job this operator made, with the facts of its pods (None for a Job this
    operator did not make)."""
    labels = job.get("metadata", {}).get("labels") or {}
    if LABEL_STAGE not in labels or LABEL_ATTEMPT not in labels:
        return None
    stage = f"i{labels[LABEL_ITERATION]}-{labels[LABEL_STAGE]}"
    status = job.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or [] if c["status"] == "True"}
    suspended = bool((job.get("spec") or {}).get("suspend"))
    base: dict[str, Any] = {
        "name": job["metadata"]["name"],
        "stage": stage,
        "attempt": int(labels[LABEL_ATTEMPT]),
        "pods": tuple(pods),
    }
    for kind, outcome in (("Complete", "succeeded"), ("Failed", "failed")):
        if kind in conditions:
            found = conditions[kind]
            return JobState(
                **base,
                outcome=outcome,  # type: ignore[arg-type]
                reason=found.get("reason", ""),
                message=found.get("message", ""),
                finished_at=timestamp(found.get("lastTransitionTime")),
                suspended=suspended,
            )
    running = status.get("active", 0) > 0 and not suspended
    return JobState(**base, outcome="running" if running else "waiting", suspended=suspended)


def latest(jobs: Iterable[JobState]) -> dict[str, JobState]:
    """The newest attempt of each stage, by stage name."""
    found: dict[str, JobState] = {}
    for job in jobs:
        if job.stage not in found or job.attempt > found[job.stage].attempt:
            found[job.stage] = job
    return found


@dataclass
class Children:
    """What a run's reconcile observes of its children."""

    jobs: list[JobState] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    server_pods: dict[str, list[PodFact]] = field(default_factory=dict)


def children(
    jobs: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
) -> Children:
    """The facts of a run's Jobs (each with its pods), server Deployments and their pods."""
    job_pods: defaultdict[str, list[PodFact]] = defaultdict(list)
    server_pods: defaultdict[str, list[PodFact]] = defaultdict(list)
    for pod in pods:
        labels = pod["metadata"]["labels"]
        if LABEL_SERVER in labels:
            server_pods[labels[LABEL_SERVER]].append(pod_fact(pod))
        else:
            job_pods[labels.get("job-name", "")].append(pod_fact(pod))
    states = [
        state
        for job in jobs
        if (state := job_state(job, job_pods[job["metadata"]["name"]])) is not None
    ]
    servers = [d["metadata"]["name"] for d in deployments]
    return Children(states, servers, dict(server_pods))
