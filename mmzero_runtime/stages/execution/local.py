"""The local executor: `mmzero run run.yaml` walks the plan and runs each stage as a process.

Every stage runs as `mmzero stage ...` in a child process (the same command a cluster Job
runs), so its memory is returned when it ends and a kill loses at most that stage's current
step. Finished stages are skipped; the effective spec is pinned in `<run>/run.yaml`, so a run
resumed with another method fails instead of mixing two methods in one run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mmzero_runtime.alarms import Alarm, evaluate, stops
from mmzero_runtime.models.fit import check_fit
from mmzero_runtime.spec import MMZeroRun, load_run, parse_run
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.execution.runner import open_store, pin_run, versions
from mmzero_runtime.stages.execution.transfer import import_base_model
from mmzero_runtime.stages.graph import launch
from mmzero_runtime.stages.graph.keys import BASE_MODEL, RUN_FILE, RUN_MANIFEST
from mmzero_runtime.stages.graph.plan import STAGE_KINDS, Stage, all_stages, plan
from mmzero_runtime.stages.kinds.grpo_loop import STEPS_DIR
from mmzero_runtime.stages.process.context import WORK_DIR
from mmzero_runtime.storage.manifest import read_manifest
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

log = logging.getLogger(__name__)


def spec_hash(run: MMZeroRun) -> str:
    """sha256 of the spec's canonical JSON: two runs with one hash ran one method."""
    text = json.dumps(run.spec.model_dump(mode="json"), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def finished(run: MMZeroRun, store: ArtifactStore) -> list[str]:
    """Names of the stages whose manifest exists."""
    return [s.name for s in launch.finished(run.spec, store)]


def run_alarms(run: MMZeroRun, store: ArtifactStore) -> list[Alarm]:
    """The alarms the finished stages' health figures fire under the run's `spec.health`."""
    done = launch.finished(run.spec, store)
    return evaluate(run.spec.health, launch.health_figures(store, done))


def check_alarms(run: MMZeroRun, store: ArtifactStore, told: set[str]) -> None:
    """Log each alarm once; with `health.on_alarm: stop`, stop the run while any fires."""
    alarms = run_alarms(run, store)
    for alarm in alarms:
        if alarm.message not in told:
            told.add(alarm.message)
            log.warning("%s", alarm.message)
    if stops(run.spec.health, alarms):
        raise StageError(
            f"run {run.metadata.name} stopped by {len(alarms)} alarm(s) "
            "(spec.health.on_alarm: stop): "
            + "; ".join(a.message for a in alarms)
            + ". Finished stages are kept: fix the cause, or change the threshold in "
            "spec.health or set on_alarm: warn, and rerun to go on"
        )


def write_run_manifest(run: MMZeroRun, store: ArtifactStore) -> dict[str, Any]:
    """Everything needed to rerun: versions, spec hash, seed, and every stage's digests."""
    stages = {}
    for stage in [None, *all_stages(run.spec)]:
        prefix = "base" if stage is None else stage.output
        manifest = read_manifest(store, prefix)
        if manifest is None:
            continue
        has_model = any(name.startswith("model/") for name in manifest.files)
        stages[prefix] = {
            "outputs": manifest.digest(),
            "checkpoint": manifest.digest("model") if has_model else None,
        }
    body = {
        "run": run.metadata.name,
        "spec_hash": spec_hash(run),
        "seed": run.spec.seed,
        "run_file": RUN_FILE,
        "versions": versions(),
        "stages": stages,
    }
    store.write_bytes(RUN_MANIFEST, json.dumps(body, indent=1, sort_keys=True).encode())
    return body


def _run_child(stage: Stage, directory: Path, device: str) -> None:
    """The stage as one whole process (a cluster's shards and nodes are one process here)."""
    args = launch.stage_args(stage, str(directory / RUN_FILE), str(directory))
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "mmzero_runtime.cli", *args, "--device", device])
    if code != 0:
        log_file = directory / launch.log_name(stage.name)
        raise StageError(
            f"stage {stage.name} failed with exit status {code} after "
            f"{time.monotonic() - started:.0f} s; its message is above (and in {log_file}). "
            "Finished stages are kept: fix the cause and rerun the same command to resume"
        )


def run_local(
    run: MMZeroRun, directory: Path, *, until: str | None = None, device: str = "cpu"
) -> list[str]:
    """Run every stage not yet done (up to stage kind `until` of the last iteration)."""
    store = open_store(run, directory)
    imported = read_manifest(store, "base") is not None
    # Before pinning, so that a run refused here can be fixed and started again.
    check_fit(run.spec, store.path(BASE_MODEL) if imported else run.spec.model)
    pin_run(run, store)
    if run.spec.suspend:
        raise StageError(
            f"run {run.metadata.name} is suspended (spec.suspend: true); set it to false and "
            "rerun to go on"
        )
    import_base_model(run, store)
    ran: list[str] = []
    told: set[str] = set()
    while True:
        check_alarms(run, store, told)
        done = finished(run, store)
        ready = [s for s in plan(run.spec, done) if _before(s, until, run.spec.iterations)]
        if not ready:
            break
        stage = ready[0]
        log.info("running stage=%s (%d/%d done)", stage.name, len(done), len(all_stages(run.spec)))
        _run_child(stage, directory, device)
        ran.append(stage.name)
        write_run_manifest(run, store)
    write_run_manifest(run, store)
    return ran


def _before(stage: Stage, until: str | None, iterations: int) -> bool:
    """True when `stage` runs no later than kind `until` of the last iteration."""
    if until is None or stage.iteration < iterations:
        return True
    return STAGE_KINDS.index(stage.kind) <= STAGE_KINDS.index(until)


def status_lines(directory: Path) -> list[str]:
    """One line per stage of a local run: done, running (with its last step), or waiting."""
    run = load_run(directory / RUN_FILE)
    store = LocalStore(directory)
    done = set(finished(run, store))
    ready = {s.name for s in plan(run.spec, done)}
    lines = [f"run {run.metadata.name}: {len(done)}/{len(all_stages(run.spec))} stages done"]
    for stage in all_stages(run.spec):
        state = "done" if stage.name in done else "ready" if stage.name in ready else "waiting"
        scratch = directory / WORK_DIR / stage.name / STEPS_DIR
        if state == "ready" and scratch.is_dir():
            steps = len(list(scratch.glob("step-*.jsonl")))
            state = f"started ({steps} step(s) checkpointed)"
        lines.append(f"  {stage.name:<20} {state}")
    lines += [f"  {alarm.message}" for alarm in run_alarms(run, store)]
    return lines


def load_effective(path: Path, iterations: int | None) -> MMZeroRun:
    """The run file, with `--iterations` applied."""
    run = load_run(path)
    if iterations is None:
        return run
    document = run.model_dump(mode="json")
    document["spec"]["iterations"] = iterations
    return parse_run(document, f"{path} with --iterations {iterations}")
