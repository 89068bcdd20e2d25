"""Run one stage: check its inputs are finished and intact, run it, publish its manifest.

This is `mmzero stage <kind> --spec run.yaml --iteration N`, the one entry point both
executors use: the local executor as a subprocess, the operator as a Job's command. A stage
whose manifest exists is not run again; one whose inputs are missing or corrupt stops with a
message naming them.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import yaml

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.alarms import HEALTH_FILE
from mmzero_runtime.models.fit import check_fit
from mmzero_runtime.spec import MUTABLE_AFTER_START, MMZeroRun, load_run, parse_run_file
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph import keys, launch
from mmzero_runtime.stages.graph.plan import Stage, StageKind, all_stages
from mmzero_runtime.stages.health.health import health_bytes, stage_health
from mmzero_runtime.stages.health.retention import prune
from mmzero_runtime.stages.kinds import (
    coder_data,
    coder_grpo,
    evaluate,
    propose,
    proposer_grpo,
    solver_data,
    solver_grpo,
)
from mmzero_runtime.stages.process import measurements
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.ranks import barrier, from_environment, join
from mmzero_runtime.stages.process.shards import (
    Shard,
    check_shardable,
    merge,
    pending,
    shard_prefix,
    shards_root,
)
from mmzero_runtime.storage.manifest import Manifest, StageOutput, read_manifest, verify
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

log = logging.getLogger(__name__)

VERSIONED = ("mmzero", "torch", "transformers", "cairosvg", "mathruler")

KINDS: dict[StageKind, Callable[[StageContext], StageOutput | None]] = {
    "proposer-grpo": proposer_grpo.run,
    "propose": propose.run,
    "coder-data": coder_data.run,
    "coder-grpo": coder_grpo.run,
    "solver-data": solver_data.run,
    "solver-grpo": solver_grpo.run,
    "evaluate": evaluate.run,
}
"""Each stage kind's module (its `run` returns None on a trainer's follower ranks, which
publish nothing)."""


def versions() -> dict[str, str]:
    """Versions that decide a stage's outputs, recorded in every manifest."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def find_stage(run: MMZeroRun, kind: StageKind, iteration: int) -> Stage:
    """The plan's stage of `kind` in `iteration`."""
    for stage in all_stages(run.spec):
        if stage.kind == kind and stage.iteration == iteration:
            return stage
    raise StageError(
        f"no stage {kind} in iteration {iteration}: the run has {run.spec.iterations} "
        "iteration(s); raise spec.iterations to extend it"
    )


def pin_run(run: MMZeroRun, store: ArtifactStore) -> MMZeroRun:
    """Store the effective run file once; later only the fields in MUTABLE_AFTER_START change."""
    text = yaml.safe_dump(run.model_dump(mode="json"), sort_keys=False).encode()
    stored = store.read_bytes(keys.RUN_FILE) if store.exists(keys.RUN_FILE) else None
    if stored is not None and stored != text:
        pinned = parse_run_file(stored, f"{store}/{keys.RUN_FILE}")
        mutable = {name: getattr(run.spec, name) for name in MUTABLE_AFTER_START}
        same = pinned.spec.model_copy(update=mutable)
        if same != run.spec:
            raise StageError(
                f"{store} was started with another spec; only "
                + ", ".join(f"spec.{name}" for name in MUTABLE_AFTER_START)
                + " may change in a started run. Give the run a new "
                "metadata.name, or delete the run's directory to start over"
            )
    if stored != text:  # each stage pins too: an unchanged run file is not written again
        store.write_bytes(keys.RUN_FILE, text)
    store.path(keys.RUN_FILE)  # the stage processes read the local copy
    return run


def _check_inputs(run: MMZeroRun, store: ArtifactStore, stage: Stage) -> None:
    prefixes = {keys.producer_prefix(key) for _, key in stage.inputs}
    for prefix in sorted(prefixes):
        if read_manifest(store, prefix) is None:
            raise StageError(
                f"stage {stage.name}: input stage under {prefix} has not finished; run the "
                f"stages before it first (`mmzero run` does), after: {', '.join(stage.depends_on)}"
            )
        verify(store, prefix)


def run_stage(
    run: MMZeroRun,
    store: ArtifactStore,
    kind: StageKind,
    iteration: int,
    *,
    device: str = "cpu",
    shard: Shard | None = None,
) -> Manifest | None:
    """Run the stage unless its manifest exists; return its manifest. Two ways return None:
    under a distributed launcher (a trainer on several GPUs or nodes) the leading rank
    publishes and the other ranks return None once they have trained (`process/ranks.py`); a
    shard of a batch stage (`process/shards.py`) returns None unless it was the last to finish
    and merged the stage."""
    stage = find_stage(run, kind, iteration)
    shard = shard or Shard()
    check_shardable(stage, shard)
    ranks = from_environment()
    if ranks.world > 1 and not stage.kind.endswith("-grpo"):
        raise StageError(
            f"stage {stage.name}: WORLD_SIZE={ranks.world}, but only GRPO stages run as several "
            "processes; start it without torchrun"
        )
    join(ranks)
    done = read_manifest(store, stage.output)
    if done is not None:
        log.info("stage already done, nothing to do stage=%s", stage.name)
        return done
    if ranks.leader:
        pin_run(run, store)  # a cluster run's first stage stores its run file, as `mmzero run` does
        if read_manifest(store, "base") is None:
            # A cluster run that nobody `mmzero import`ed: its first stage imports spec.model.
            from mmzero_runtime.stages.execution.transfer import import_base_model

            import_base_model(run, store)
    barrier(ranks)
    if ranks.node_leader:  # one download and check per node; the node's other ranks wait
        _check_inputs(run, store, stage)
        check_fit(run.spec, store.path(keys.BASE_MODEL))
    barrier(ranks)
    ctx = StageContext(run, store, stage, device=device, ranks=ranks, shard=shard)
    started = time.monotonic()
    if not shard.whole:
        return _run_shard(ctx, started)
    output = KINDS[kind](ctx)
    if output is None:  # a follower: the leader publishes
        return None
    failures = {f"{s}/{r}": n for (s, r), n in sorted(ctx.ledger.counts().items())}
    return _publish(ctx, output, failures, started)


def _run_shard(ctx: StageContext, started: float) -> Manifest | None:
    """Do this shard's block unless it is done, then merge the stage if no shard is left."""
    stage, shard, store = ctx.stage, ctx.shard, ctx.store
    prefix = shard_prefix(stage, shard)
    if read_manifest(store, prefix) is None:
        output = KINDS[stage.kind](ctx)
        assert output is not None  # only a trainer's follower ranks return None
        failures = {f"{s}/{r}": n for (s, r), n in sorted(ctx.ledger.counts().items())}
        output.commit({"stage": stage.name, "shard": shard.index, "shards": shard.count,
                       "failures": failures, "versions": versions()})  # fmt: skip
        ctx.finish()
    left = pending(store, stage, shard.count)
    if left:
        log.info("shard done stage=%s shard=%d/%d waiting for shards %s",
                 stage.name, shard.index, shard.count, left)  # fmt: skip
        return None
    merged, failures = merge(store, stage, shard.count)
    manifest = _publish(ctx, merged, failures, started)
    store.delete_prefix(shards_root(stage))
    return manifest


def _publish(
    ctx: StageContext, output: StageOutput, failures: dict[str, int], started: float
) -> Manifest:
    """Health figures, then the stage's manifest; then its summary and metrics."""
    run, store, stage = ctx.run, ctx.store, ctx.stage
    health = stage_health(run.spec, stage, lambda name: store.read_bytes(f"{output.prefix}/{name}"))
    output.put_bytes(HEALTH_FILE, health_bytes(health))
    prometheus.observe_health(health["figures"], health["histograms"])
    meta = {
        "stage": stage.name,
        "iteration": stage.iteration,
        "inputs": {
            purpose: {"key": key, "digest": _digest(ctx, key)} for purpose, key in stage.inputs
        },
        "failures": failures,
        "versions": versions(),
    }
    if not ctx.shard.whole:
        meta["shards"] = ctx.shard.count
    manifest = output.commit(meta)
    ctx.finish()
    if stage.kind.endswith("-grpo"):
        prune(run.spec, store)
    seconds = time.monotonic() - started
    measurements.write_summary(
        store.root,
        stage.name,
        {
            "seconds": round(seconds, 3),
            "peak_rss_bytes": measurements.peak_rss_bytes(),
            "device": ctx.device,
        },
    )
    measurements.write_exposition(store.root, stage.name, prometheus.exposition())
    measurements.publish(store, stage.name)
    log.info("stage done stage=%s seconds=%.1f files=%d", stage.name, seconds, len(manifest.files))
    return manifest


def _digest(ctx: StageContext, key: str) -> str:
    """Digest of an input: a data file's sha256, or a checkpoint directory's content digest."""
    under = key.removeprefix(keys.producer_prefix(key) + "/")
    entry = ctx.producer(key).files.get(under)
    return f"sha256:{entry.sha256}" if entry else ctx.digest_of(key)


def run_dir(run: MMZeroRun, root: Path | None = None) -> Path:
    """The run's directory on this machine (`launch.run_dir`): under `root` (the current
    directory), or for an S3 store its mirror under `~/.cache/mmzero`."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmzero"
    return Path(launch.run_dir(run.spec, run.metadata.name, root or Path.cwd(), cache))


def open_store(run: MMZeroRun, directory: Path) -> ArtifactStore:
    """The run's artifact store: the directory itself, or `<s3 uri>/<name>` mirrored there."""
    storage = run.spec.storage
    if not storage.uri.startswith("s3://"):
        return LocalStore(directory)
    from mmzero_runtime.storage.s3 import S3Store

    return S3Store.for_run(storage, run.metadata.name, root=directory)


def open_run(spec: str | Path, directory: Path | None = None) -> tuple[MMZeroRun, ArtifactStore]:
    """(run, store) of the run file `spec`, at `directory` or where the spec says."""
    run = load_run(spec)
    return run, open_store(run, directory or run_dir(run))


def open_run_at(where: Path) -> tuple[MMZeroRun, ArtifactStore]:
    """(run, store) of a run directory (its pinned run file), or of a run file (its store may
    be S3, mirrored into `run_dir`)."""
    if where.is_dir():
        run = load_run(where / keys.RUN_FILE)
        return run, open_store(run, where)
    run = load_run(where)
    return run, open_store(run, run_dir(run))
