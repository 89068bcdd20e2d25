"""The reconcile core: (run, what exists, what is done, now) -> what to do. Pure.

Level-based: every call recomputes the whole answer from the run object, the Jobs that exist
and the stage manifests in the store, so it is the same after an operator restart as before
it, and calling it twice in a row changes nothing. The kopf handlers only gather the inputs
and carry out the `Decision`; each rule lives in its policy (`policies/`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mmzero_operator import conditions as reasons
from mmzero_operator.conditions import Condition, ConditionType, conditions, iso
from mmzero_operator.manifests import server_objects, spec_config_map, stage_objects
from mmzero_operator.observe import JobState, PodFact, latest, timestamp
from mmzero_operator.policies import alarms as alarm_policy
from mmzero_operator.policies import readiness, retries
from mmzero_operator.policies import servers as server_policy
from mmzero_runtime.alarms import Alarm, stops
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import Stage, all_stages, plan


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


@dataclass
class _Progress:
    """What walking the ready stages found."""

    running: list[Stage] = field(default_factory=list)
    blocked: PodFact | None = None
    """A running stage's pod that cannot start yet (it fails the run at its deadline)."""
    failure: str | None = None
    failed_stage: str | None = None
    wake: list[float] = field(default_factory=list)


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
    """Everything the run needs now, from the MMZeroRun `body`, its stage Jobs, the stages whose
    manifest is in the store (`done`), its frozen-role servers and their pods, the finished
    stages' `health` figures and the shared render service's pods (None: not watched)."""
    # 1. The spec; one the CRD should have refused fails the run, and nothing is done.
    status = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation", 1))
    try:
        spec = RunSpec.model_validate(body["spec"])
    except ValidationError as error:
        return Decision(status={"phase": "Failed", "message": f"invalid spec: {error}",
                                "observedGeneration": generation})  # fmt: skip
    # 2. What is done, what ran last, which alarms fire.
    stages = all_stages(spec)
    finished = set(done) & {s.name for s in stages}
    newest = latest(jobs)
    alarms = alarm_policy.firing(spec, stages, finished, health or {})
    halted = stops(spec.health, alarms)
    decision, progress = Decision(), _Progress()
    # 3. Unless the run is over: suspend, or resume and advance every stage whose inputs are done.
    over = status.get("phase") == "Failed" or finished.issuperset(s.name for s in stages)
    if not over and spec.suspend:
        decision.suspend = [j.name for j in newest.values() if j.outcome == "running"]
    elif not over:
        decision.config_map = spec_config_map(body)
        decision.resume = [j.name for j in newest.values() if j.suspended
                           and j.outcome == "waiting" and not spec.cluster.queue]  # fmt: skip
        _advance(body, spec, plan(spec, finished), newest, now, decision, progress)
        if halted:  # what already runs finishes; nothing new starts, not even a retry
            decision.create = []
            progress.running = [s for s in progress.running
                                if s.name in newest and newest[s.name].active]  # fmt: skip
    # 4. Frozen-role servers exist exactly while a stage that asks them runs.
    running = [] if progress.failure or spec.suspend else progress.running
    start, decision.delete_servers = server_policy.changes(body, spec, running, newest, servers)
    for stage in start:
        decision.create.extend(server_objects(body, spec, stage))
    # 5. The phase, then the whole status with its conditions.
    phase, message = _phase(status, spec, stages, finished, progress, alarms if halted else [])
    wanted = {
        **_run_conditions(phase, message, spec, progress),
        ConditionType.SERVERS_READY: readiness.servers_ready(server_pods or {}, set(servers)),
        ConditionType.RENDER_READY: readiness.render_ready(render_pods),
        ConditionType.HEALTH_ALARM: alarm_policy.condition(alarms),
    }
    decision.status = {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        **_progress(status, stages, finished, progress, phase, now),
        "attempts": {s: j.attempt for s, j in sorted(newest.items())},
        "alarms": [alarm.as_record() for alarm in alarms],
        "conditions": conditions(status.get("conditions") or [], wanted, now, generation),
    }
    # 6. Come back when the earliest wait (a backoff, a grace, a deadline) ends.
    decision.requeue_after = min(progress.wake, default=None)
    return decision


def _advance(
    body: dict[str, Any],
    spec: RunSpec,
    ready: list[Stage],
    newest: Mapping[str, JobState],
    now: float,
    decision: Decision,
    progress: _Progress,
) -> None:
    """Apply `policies.retries` to each stage whose inputs are done; the first failure fails
    the run and starts nothing."""
    for stage in ready:
        step = retries.advance(spec, stage, newest.get(stage.name), now)
        if step.failure is not None:
            progress.failure, progress.failed_stage = step.failure, stage.name
            decision.create = []
            return
        if step.start is not None:
            decision.create.extend(stage_objects(body, spec, stage, step.start))
        if step.running:
            progress.running.append(stage)
        if step.blocked is not None:
            progress.blocked = step.blocked
        if step.wake is not None:
            progress.wake.append(step.wake)


def _phase(
    status: Mapping[str, Any],
    spec: RunSpec,
    stages: list[Stage],
    finished: set[str],
    progress: _Progress,
    holding: list[Alarm],
) -> tuple[str, str]:
    """The run's phase and its one-line message; `holding`: the alarms that stop it."""
    if status.get("phase") == "Failed":
        return "Failed", status.get("message", "")
    if progress.failure:
        return "Failed", progress.failure
    if finished.issuperset(s.name for s in stages):
        return "Succeeded", f"all {len(stages)} stages done"
    if spec.suspend:
        return "Suspended", "spec.suspend is true: no stage starts"
    if holding:
        return "Stopped", (
            f"stopped by {len(holding)} alarm(s) (spec.health.on_alarm: stop): "
            + alarm_policy.messages(holding)
        )
    return "Running", ", ".join(s.name for s in progress.running) or "waiting to retry"


def _progress(
    status: Mapping[str, Any],
    stages: list[Stage],
    finished: set[str],
    progress: _Progress,
    phase: str,
    now: float,
) -> dict[str, Any]:
    """How far the run is: stages done, the stage shown (the failed one, else the first
    running, else the last done), checkpoints, and its start and completion time or ETA."""
    last_done = [s for s in stages if s.name in finished][-1:]
    failed = [s for s in stages if s.name == progress.failed_stage]
    shown = (failed or progress.running[:1] or last_done or stages[:1])[0]
    started = status.get("startTime") or iso(now)
    found: dict[str, Any] = {
        "stagesDone": len(finished),
        "stagesTotal": len(stages),
        "startTime": started,
        "checkpoints": _checkpoints(stages, finished),
        "iteration": shown.iteration,
        "stage": shown.name,
    }
    if phase in ("Succeeded", "Failed"):
        found["completionTime"] = status.get("completionTime") or iso(now)
    elif finished:
        elapsed = now - (timestamp(started) or now)
        eta = now + elapsed / len(finished) * (len(stages) - len(finished))
        found["eta"] = iso(eta - eta % 60)  # to the minute: no status write per tick
    return found


def _run_conditions(
    phase: str, message: str, spec: RunSpec, progress: _Progress
) -> dict[ConditionType, Condition]:
    """The conditions of the phase, of a blocked pod, and of the store (read: this runs)."""
    blocked = progress.blocked
    why = (blocked.blocked if blocked else None) or reasons.NOT_BLOCKED
    return {
        ConditionType.PROGRESSING: Condition(phase == "Running", phase, message),
        ConditionType.PODS_BLOCKED: Condition(
            blocked is not None and phase == "Running",
            why,
            blocked.why_blocked if blocked else "",
        ),
        ConditionType.STORE_REACHABLE: Condition(True, reasons.MANIFESTS_READ),
        ConditionType.SUSPENDED: Condition(
            phase == "Suspended", reasons.SPEC_SUSPEND if spec.suspend else phase
        ),
        ConditionType.SUCCEEDED: Condition(
            phase == "Succeeded", phase, message if phase == "Succeeded" else ""
        ),
        ConditionType.FAILED: Condition(
            phase == "Failed",
            reasons.STAGE_FAILED if phase == "Failed" else phase,
            message if phase == "Failed" else "",
        ),
    }


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
    unreachable = conditions(
        previous,
        {ConditionType.STORE_REACHABLE: Condition(False, reasons.STORE_UNAVAILABLE, problem)},
        now,
        generation,
    )
    others = [c for c in previous if c["type"] != ConditionType.STORE_REACHABLE]
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
