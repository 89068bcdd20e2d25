"""The reconcile core: (run, what exists, what is done, now) -> what to do. Pure.

Level-based: every call recomputes the whole answer from the run object, the Jobs that exist
and the stage manifests in the store, so it is the same after an operator restart as before
it, and calling it twice in a row changes nothing. The kopf handlers only gather the inputs
and carry out the `Decision`.

A stage is done when its manifest is in the store, never because its Job succeeded: a Job that
succeeds without a manifest fails its attempt once `manifest_grace_seconds` have passed.
Failed attempts are retried as new Jobs (`-a<N>`) after an exponential backoff, up to
`cluster.stage_attempts`; an attempt failed by the pod failure policy (exit status 2: a usage
or spec error) fails the run at once, since retrying cannot help.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from mmzero_operator.children import (
    LABEL_ATTEMPT,
    LABEL_ITERATION,
    LABEL_STAGE,
    server_objects,
    servers,
    spec_config_map,
    stage_objects,
)
from mmzero_runtime.alarms import Alarm, evaluate, stops
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages import keys
from mmzero_runtime.stages.plan import Stage, all_stages, plan

BACKOFF_CAP_SECONDS = 1800
DETERMINISTIC_REASONS = frozenset({"PodFailurePolicy"})
"""Job failure reasons that another attempt cannot fix."""

Outcome = Literal["waiting", "running", "succeeded", "failed"]


BLOCKING_WAIT_REASONS = {
    "ErrImagePull": "ImagePull",
    "ImagePullBackOff": "ImagePull",
    "InvalidImageName": "InvalidImage",
    "CreateContainerConfigError": "ContainerConfig",
}
"""Container waiting reasons that mean the pod cannot start by itself, by class."""
DETERMINISTIC_BLOCKS = frozenset({"InvalidImage"})


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


def pod_fact(pod: Mapping[str, Any]) -> PodFact:
    """Classify a pod: blocked before running, failed (exit code, OOMKilled, message), or fine."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    created = _time(pod["metadata"].get("creationTimestamp"))
    for condition in status.get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
            since = _time(condition.get("lastTransitionTime")) or created
            return PodFact(name, "Unschedulable", condition.get("message", ""), since)
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


def _time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


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
                finished_at=_time(found.get("lastTransitionTime")),
                suspended=suspended,
            )
    running = status.get("active", 0) > 0 and not suspended
    return JobState(**base, outcome="running" if running else "waiting", suspended=suspended)


@dataclass
class Decision:
    """What the handlers do: keep the run file current, create Jobs, (un)suspend Jobs, write
    status, and come back after `requeue_after` seconds."""

    config_map: dict[str, Any] | None = None
    """The run file's ConfigMap as it should be (created, or replaced when it differs)."""
    create: list[dict[str, Any]] = field(default_factory=list)
    delete_servers: list[str] = field(default_factory=list)
    """Frozen-role servers (Deployment, Service and NetworkPolicy of one name) no running stage
    needs."""
    suspend: list[str] = field(default_factory=list)
    resume: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None


def backoff_seconds(spec: RunSpec, failed_attempt: int) -> float:
    """Wait before the attempt after `failed_attempt`: the base, doubled per attempt, capped."""
    base = spec.cluster.retry_backoff_seconds
    return float(min(base * 2 ** (failed_attempt - 1), BACKOFF_CAP_SECONDS))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Progress:
    """What walking the ready stages found."""

    running: list[Stage] = field(default_factory=list)
    blocked: str | None = None
    """Why a running stage's pod cannot start yet (it fails the run at its deadline)."""
    failure: str | None = None
    failed_stage: str | None = None
    wake: list[float] = field(default_factory=list)


def _latest(jobs: Iterable[JobState]) -> dict[str, JobState]:
    latest: dict[str, JobState] = {}
    for job in jobs:
        if job.stage not in latest or job.attempt > latest[job.stage].attempt:
            latest[job.stage] = job
    return latest


def _advance(
    body: dict[str, Any],
    spec: RunSpec,
    stage: Stage,
    job: JobState | None,
    now: float,
    decision: Decision,
    progress: _Progress,
) -> None:
    """Start, wait for, or retry one stage whose inputs are done."""
    if job is None:
        decision.create.extend(stage_objects(body, spec, stage, 1))
        progress.running.append(stage)
        return
    if job.outcome in ("waiting", "running"):
        blocked = next((p for p in job.pods if p.blocked), None)
        if blocked is None:
            progress.running.append(stage)
            return
        since = blocked.since if blocked.since is not None else now
        deadline = since + spec.cluster.pending_deadline_seconds
        if blocked.blocked not in DETERMINISTIC_BLOCKS and now < deadline:
            progress.running.append(stage)
            progress.blocked = f"{blocked.blocked}: pod {blocked.name}: {blocked.detail}"
            progress.wake.append(deadline - now)
            return
        progress.failure = (
            f"stage {stage.name} cannot start: {blocked.blocked}: pod {blocked.name}: "
            f"{blocked.detail} (Job {job.name})"
        )
        progress.failed_stage = stage.name
        return
    finished = job.finished_at if job.finished_at is not None else now
    reason, message = job.reason, job.message
    ended = next((p for p in job.pods if p.failed), None)
    if ended is not None:
        message = f"{message}; {ended.detail}" if message else ended.detail
    if job.outcome == "succeeded":
        grace_ends = finished + spec.cluster.manifest_grace_seconds
        if now < grace_ends:  # the manifest may still be on its way to the store
            progress.running.append(stage)
            progress.wake.append(grace_ends - now)
            return
        reason = "NoManifest"
        message = (
            f"Job {job.name} succeeded but the stage wrote no manifest within "
            f"{spec.cluster.manifest_grace_seconds} s; see the stage's log in the store"
        )
    if reason in DETERMINISTIC_REASONS or job.attempt >= spec.cluster.stage_attempts:
        tried = f"after {job.attempt} attempt(s)"
        progress.failure = (
            f"stage {stage.name} failed {tried}: {reason}: {message} (Job {job.name})"
        )
        progress.failed_stage = stage.name
        return
    retry_at = finished + backoff_seconds(spec, job.attempt)
    if now >= retry_at:
        decision.create.extend(stage_objects(body, spec, stage, job.attempt + 1))
        progress.running.append(stage)
    else:
        progress.wake.append(retry_at - now)


def _serve(
    body: dict[str, Any],
    spec: RunSpec,
    progress: _Progress,
    latest: dict[str, JobState],
    existing: set[str],
    decision: Decision,
) -> None:
    """Frozen-role servers exist exactly while a stage that asks them runs: created with its
    Job (with a queue: once the queue admits the Job), deleted once it is done, failed or
    suspended, so their GPUs go back at once. They are created after the Job: the trainer's
    scheduling, image pull and model load overlap the servers' start (its pod retries their
    Services until they answer, `pipeline.SERVER_WAIT_SECONDS`)."""
    wanted: dict[str, Stage] = {}
    if not progress.failure and not spec.suspend:
        for stage in progress.running:
            job = latest.get(stage.name)
            waiting = job.suspended if job is not None else bool(spec.cluster.queue)
            if waiting:
                continue
            for name, _, _ in servers(body["metadata"]["name"], stage):
                wanted[name] = stage
    made: set[str] = set()
    for name, stage in wanted.items():
        if name not in existing and stage.name not in made:
            decision.create.extend(server_objects(body, spec, stage))
            made.add(stage.name)
    decision.delete_servers = sorted(existing - set(wanted))


def _conditions(
    previous: list[dict[str, Any]], wanted: dict[str, tuple[bool, str, str]], now: float, gen: int
) -> list[dict[str, Any]]:
    """metav1.Conditions; a condition keeps its lastTransitionTime while its status holds."""
    old = {c["type"]: c for c in previous}
    out = []
    for kind, (true, reason, message) in wanted.items():
        status = "True" if true else "False"
        before = old.get(kind)
        since = before["lastTransitionTime"] if before and before["status"] == status else _iso(now)
        out.append({"type": kind, "status": status, "reason": reason, "message": message[:4096],
                    "lastTransitionTime": since, "observedGeneration": gen})  # fmt: skip
    return out


def _troubled(facts: Iterable[tuple[str, PodFact]]) -> list[tuple[PodFact, str]]:
    """Pods that cannot start, crashed or were restarted, each with `<what>: <detail>`."""
    return [(fact, f"{what}: {fact.detail}") for what, fact in facts
            if fact.blocked or fact.failed or fact.restarted]  # fmt: skip


def _pods_ready(
    problems: list[tuple[PodFact, str]], prefix: str, hint: str
) -> tuple[bool, str, str]:
    first = problems[0][0]
    reason = f"{prefix}PodBlocked" if first.blocked else f"{prefix}PodFailed"
    return False, reason, "; ".join(text for _, text in problems) + hint


def _servers_ready(
    pods: Mapping[str, Iterable[PodFact]], servers: set[str]
) -> tuple[bool, str, str]:
    """False while a frozen-role server pod cannot start, has crashed or was restarted: the
    stage keeps waiting for it (its Deployment replaces the pod), and this says why."""
    problems = _troubled((f"server {name}", fact) for name, facts in sorted(pods.items())
                         if name in servers for fact in facts)  # fmt: skip
    if not problems:
        return True, "Ready" if servers else "NoServers", ""
    hint = (
        "; the Deployment replaces a failed pod and the stage waits for it (up to 30 min). If "
        "it keeps failing (OOMKilled), raise the memory of the stage's server pod group in "
        "spec.resources"
    )
    return _pods_ready(problems, "Server", hint)


def _render_ready(pods: Iterable[PodFact] | None) -> tuple[bool, str, str]:
    """False while a pod of the shared render service cannot start, crashed or was restarted
    (an SVG that exhausts its memory limit gets the pod OOM-killed): stages wait for it."""
    if pods is None:
        return True, "NotWatched", ""
    problems = _troubled(("render service", fact) for fact in pods)
    if not problems:
        return True, "Ready", ""
    hint = (
        "; its Deployment replaces a failed pod and the stages' renders wait and retry. If it "
        "keeps failing (OOMKilled), raise render.resources.limits.memory in the chart's values "
        "above spec.render.memory_bytes per worker times render.workers"
    )
    return _pods_ready(problems, "Render", hint)


def _health_condition(alarms: list[Alarm]) -> tuple[bool, str, str]:
    """True while an alarm fires; the reason names the alarms, the message says what to do."""
    if not alarms:
        return False, "Healthy", ""
    names = sorted({a.name for a in alarms})
    reason = "".join(part.title() for name in names for part in name.split("_"))
    return True, reason, _alarm_messages(alarms)


def _alarm_messages(alarms: list[Alarm], shown: int = 3) -> str:
    """The first alarms' messages (status.alarms has them all)."""
    more = f"; and {len(alarms) - shown} more in status.alarms" if len(alarms) > shown else ""
    return "; ".join(a.message for a in alarms[:shown]) + more


def _checkpoints(stages: list[Stage], done: set[str]) -> dict[str, str]:
    """The artifact key of each role's newest finished checkpoint."""
    found: dict[str, str] = {role: keys.BASE_MODEL for role in keys.ROLES}
    for stage in stages:
        if stage.kind.endswith("-grpo") and stage.name in done and stage.role:
            found[stage.role] = keys.checkpoint_key(stage.role, stage.iteration)
    return found


def store_unavailable(body: dict[str, Any], problem: str, now: float) -> dict[str, Any]:
    """The status while the run's store cannot be read: which stages are done is unknown, so
    nothing starts; the phase stays and a StoreReachable=False condition says what to fix."""
    status = dict(body.get("status") or {})
    previous = status.get("conditions") or []
    generation = int(body["metadata"].get("generation", 1))
    unreachable = _conditions(previous, {"StoreReachable": (False, "StoreUnavailable", problem)},
                              now, generation)  # fmt: skip
    others = [c for c in previous if c["type"] != "StoreReachable"]
    return {
        **status,
        "phase": status.get("phase") or "Pending",
        "message": f"waiting for the artifact store: {problem}",
        "conditions": others + unreachable,
    }


def run_changed(event_type: str | None, body: Mapping[str, Any]) -> bool:
    """Whether a watch event of a run asks for a reconcile: the run is new (`ADDED`), listed
    (None: the operator starts or its watch restarts) or has a spec generation its status has
    not seen. Status writes, ours included, keep the generation and ask for nothing."""
    if event_type == "DELETED":
        return False
    observed = (body.get("status") or {}).get("observedGeneration")
    return event_type in (None, "ADDED") or body["metadata"].get("generation") != observed


def reconcile(
    body: dict[str, Any],
    jobs: Iterable[JobState],
    done: Iterable[str],
    now: float,
    servers: Iterable[str] = (),
    server_pods: Mapping[str, Iterable[PodFact]] | None = None,
    health: Mapping[str, Mapping[str, float]] | None = None,
    render_pods: Iterable[PodFact] | None = None,
) -> Decision:
    """Everything the run needs now. `body` is the MMZeroRun object, `jobs` the states of its
    stage Jobs, `done` the names of the stages whose manifest is in the store, `servers` the
    names of its frozen-role server Deployments, `server_pods` their pods' facts, `health`
    the finished stages' health figures (their alarms; with `health.on_alarm: stop` a firing
    alarm starts nothing new, phase Stopped, until the spec or the figures clear it) and
    `render_pods` the facts of the shared render service's pods (None: not watched)."""
    status = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation", 1))
    decision = Decision()
    try:
        spec = RunSpec.model_validate(body["spec"])
    except ValidationError as error:  # the CRD should have refused it; say so, do nothing
        decision.status = {"phase": "Failed", "message": f"invalid spec: {error}",
                           "observedGeneration": generation}  # fmt: skip
        return decision
    stages = all_stages(spec)
    finished = set(done) & {s.name for s in stages}
    latest = _latest(jobs)
    progress = _Progress()
    terminal_failure = status.get("phase") == "Failed"
    figures = health or {}
    alarms = evaluate(spec.health, {s.name: figures[s.name] for s in stages
                                    if s.name in finished and s.name in figures})  # fmt: skip
    halted = stops(spec.health, alarms)
    if not finished.issuperset(s.name for s in stages) and not terminal_failure:
        if spec.suspend:
            decision.suspend = [j.name for j in latest.values() if j.outcome == "running"]
        else:
            decision.config_map = spec_config_map(body)
            decision.resume = [
                j.name for j in latest.values()
                if j.suspended and j.outcome == "waiting" and not spec.cluster.queue
            ]  # fmt: skip
            for stage in plan(spec, finished):
                _advance(body, spec, stage, latest.get(stage.name), now, decision, progress)
                if progress.failure:
                    decision.create = []
                    break
            if halted:  # what already runs finishes; nothing new starts, not even a retry
                decision.create = []
                progress.running = [
                    s for s in progress.running
                    if s.name in latest and latest[s.name].outcome in ("waiting", "running")
                ]  # fmt: skip

    _serve(body, spec, progress, latest, set(servers), decision)
    if terminal_failure:
        phase, message = "Failed", status.get("message", "")
    elif progress.failure:
        phase, message = "Failed", progress.failure
    elif finished.issuperset(s.name for s in stages):
        phase, message = "Succeeded", f"all {len(stages)} stages done"
    elif spec.suspend:
        phase, message = "Suspended", "spec.suspend is true: no stage starts"
    elif halted:
        phase = "Stopped"
        message = f"stopped by {len(alarms)} alarm(s) (spec.health.on_alarm: stop): " + (
            _alarm_messages(alarms)
        )
    else:
        phase = "Running"
        message = ", ".join(s.name for s in progress.running) or "waiting to retry"
    last_done = [s for s in stages if s.name in finished][-1:]
    failed = [s for s in stages if s.name == progress.failed_stage]
    shown = (failed or progress.running[:1] or last_done or stages[:1])[0]
    started = status.get("startTime") or _iso(now)
    new_status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "stagesDone": len(finished),
        "stagesTotal": len(stages),
        "startTime": started,
        "attempts": {s: j.attempt for s, j in sorted(latest.items())},
        "checkpoints": _checkpoints(stages, finished),
        "alarms": [alarm.as_record() for alarm in alarms],
    }
    new_status["iteration"], new_status["stage"] = shown.iteration, shown.name
    if phase in ("Succeeded", "Failed"):
        new_status["completionTime"] = status.get("completionTime") or _iso(now)
    elif finished:
        elapsed = now - (_time(started) or now)
        remaining = len(stages) - len(finished)
        eta = now + elapsed / len(finished) * remaining
        new_status["eta"] = _iso(eta - eta % 60)  # to the minute: no status write per tick
    new_status["conditions"] = _conditions(
        status.get("conditions") or [],
        {
            "Progressing": (phase == "Running", phase, message),
            "PodsBlocked": (
                progress.blocked is not None and phase == "Running",
                (progress.blocked or "").split(":", 1)[0] or "None",
                progress.blocked or "",
            ),
            "StoreReachable": (True, "ManifestsRead", ""),
            "ServersReady": _servers_ready(server_pods or {}, set(servers)),
            "RenderReady": _render_ready(render_pods),
            "HealthAlarm": _health_condition(alarms),
            "Suspended": (phase == "Suspended", "SpecSuspend" if spec.suspend else phase, ""),
            "Succeeded": (phase == "Succeeded", phase, message if phase == "Succeeded" else ""),
            "Failed": (
                phase == "Failed",
                "StageFailed" if phase == "Failed" else phase,
                message if phase == "Failed" else "",
            ),
        },
        now,
        generation,
    )
    decision.status = new_status
    if progress.wake:
        decision.requeue_after = min(progress.wake)
    return decision
