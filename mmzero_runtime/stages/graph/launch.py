"""The launch contract: how an executor starts a stage, and what it reads back from the store.

The local executor (`stages/execution/local.py`) and the operator
(`mmzero_operator/manifests.py`) both build from here, so neither keeps its own copy: the
`mmzero stage` command line, the environment a stage process reads, its exit codes, the run
directory's layout, and the two reads that decide what runs next (which stages are done; the
alarms their health figures fire). Light on purpose: the operator imports it, and its image
has no torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import PurePath, PurePosixPath

from mmzero_runtime.alarms import collect
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import Stage, all_stages
from mmzero_runtime.storage.manifest import read_manifest
from mmzero_runtime.storage.store import ArtifactStore

PROGRAM = "mmzero"
"""The console script a stage pod runs (the local executor runs the same module with its own
Python)."""

EXIT_FAILED = 1
"""A stage failed (its message says why); another attempt may succeed."""
EXIT_USAGE = 2
"""A usage or spec error: retrying cannot help, so a cluster Job fails at once."""

METRICS_PORT_ENV = "MMZERO_METRICS_PORT"
"""Port of a stage process's Prometheus `/metrics` (the operator sets it in stage pods)."""
METRICS_ADDRESS_ENV = "MMZERO_METRICS_ADDRESS"
"""Address the stage's `/metrics` listens on (default 0.0.0.0; `::` for IPv6)."""
METRICS_LINGER_ENV = "MMZERO_METRICS_LINGER_SECONDS"
"""Seconds a finished stage keeps serving /metrics (the operator sets one scrape interval)."""
PUSHGATEWAY_ENV = "MMZERO_PUSHGATEWAY_URL"
"""Pushgateway a stage pushes its metrics to when it ends, if set (the chart's option)."""
RENDER_URL_ENV = "MMZERO_RENDER_URL"
"""Base URL of the render service; unset, a stage renders in its own sandbox pool."""
RENDER_TOKEN_ENV = "MMZERO_RENDER_TOKEN"
"""Bearer token for the render service, when it asks one."""
SHARD_ENV = "MMZERO_SHARD"
"""A shard pod's block (its Job completion index), expanded into `--shard` by the kubelet."""
NODE_RANK_ENV = "MMZERO_NODE_RANK"
"""A multi-node trainer pod's node rank (its completion index), expanded into torchrun's."""

STAGE_ENV_NAMES = (RENDER_URL_ENV, PUSHGATEWAY_ENV)
"""Operator environment passed on to every stage pod: where the cluster's shared services are
(the chart sets the render service's URL and the Pushgateway's)."""

STORE_MOUNT = "/var/lib/mmzero"
"""Where a stage or server pod mounts the run's store: the claim, or for S3 its mirror."""
LOGS_DIR = "logs"
"""Stage logs, under the run directory and in the store."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Each line of a stage's log, and of `mmzero`'s own log on the terminal."""


def server_env(purpose: str) -> str:
    """`MMZERO_SERVER_<PURPOSE>`: the URL of the frozen-role server for input `purpose`."""
    return f"MMZERO_SERVER_{purpose.upper()}"


def stage_args(stage: Stage, spec_file: str, run_dir: str) -> list[str]:
    """`stage <kind> --spec F --iteration N --run-dir D`: what follows the program."""
    return ["stage", stage.kind, "--spec", spec_file, "--iteration", str(stage.iteration),
            "--run-dir", run_dir]  # fmt: skip


def shard_args(stage: Stage, shard: str) -> list[str]:
    """`--shards N --shard K` for a stage that runs in shards, else nothing."""
    return ["--shards", str(stage.shards), "--shard", shard] if stage.shards > 1 else []


def log_name(stage: str, rank: int = 0, shard: int | None = None) -> str:
    """`logs/<stage>[.rank<R>][.shard<K>].log`: one file per process, in the run directory and
    in the store."""
    ranked = f".rank{rank}" if rank else ""
    sharded = f".shard{shard:03d}" if shard is not None else ""
    return f"{LOGS_DIR}/{stage}{ranked}{sharded}.log"


def run_dir(spec: RunSpec, run: str, root: PurePath, cache: PurePath) -> PurePath:
    """The run's directory: `<root>/<storage.uri>/<run>` for a directory store; for an S3
    store, its download mirror `<cache>/mirror/<bucket>/<prefix>/<run>`."""
    uri = spec.storage.uri
    if uri.startswith("s3://"):
        return cache / "mirror" / uri.removeprefix("s3://") / run
    return root / uri / run


def volume_run_dir(spec: RunSpec, run: str, mount: str) -> PurePosixPath:
    """The run's directory in a volume mounted at `mount` (a pod's store, the operator's view
    of the claim): `storage.uri` is a path inside it, even with a leading `/`."""
    top = PurePosixPath("/")
    return PurePosixPath(mount) / run_dir(spec, run, top, top).relative_to(top)


def render_service() -> tuple[str | None, str | None]:
    """(URL, token) of the render service the executor named, or (None, None)."""
    return os.environ.get(RENDER_URL_ENV) or None, os.environ.get(RENDER_TOKEN_ENV) or None


def finished(spec: RunSpec, store: ArtifactStore) -> list[Stage]:
    """The stages whose manifest is in the store: what "done" means to both executors."""
    return [s for s in all_stages(spec) if read_manifest(store, s.output) is not None]


def health_figures(store: ArtifactStore, stages: Iterable[Stage]) -> dict[str, dict[str, float]]:
    """The health figures `stages` stored, by stage name: what the alarms are evaluated from."""
    return collect(
        [(s.name, s.output) for s in stages],
        lambda key: store.read_bytes(key) if store.exists(key) else None,
    )
