"""`mmzero stage` as a process: around `runner.run_stage`, what the process owes its executor.

One metrics port per pod, the stage's log kept as a file in the store (a pod's disk goes with
it, and there is no kubelet log API to rely on), the final figures pushed to the Pushgateway
when one is set, and one last scrape interval before a short-lived pod exits. The CLI parses
the arguments and prints the outcome.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.spec import MMZeroRun
from mmzero_runtime.stages.execution.runner import open_store, run_stage
from mmzero_runtime.stages.graph.launch import (
    LOG_FORMAT,
    METRICS_ADDRESS_ENV,
    METRICS_LINGER_ENV,
    METRICS_PORT_ENV,
    PUSHGATEWAY_ENV,
    log_name,
)
from mmzero_runtime.stages.graph.plan import StageKind, stage_name
from mmzero_runtime.stages.process.ranks import from_environment
from mmzero_runtime.stages.process.shards import Shard
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.manifest import Manifest
from mmzero_runtime.storage.store import ArtifactStore


@dataclass(frozen=True)
class StageProcess:
    """What one `mmzero stage` process did: the manifest it published (None on a follower
    rank, and on a shard that did not merge the stage) and its rank."""

    manifest: Manifest | None
    rank: int


def run_stage_process(
    run: MMZeroRun,
    directory: Path,
    kind: StageKind,
    iteration: int,
    *,
    device: str,
    shard: Shard,
    warn: Callable[[str], None],
) -> StageProcess:
    """Run one stage in this process, with its metrics endpoint, log file and final push;
    `warn` hears of a log that could not be kept in the store."""
    ranks = from_environment()  # a trainer under torchrun: one process per GPU
    if ranks.node_leader:  # one metrics port per pod
        prometheus.serve(
            int(os.environ.get(METRICS_PORT_ENV) or 0),
            os.environ.get(METRICS_ADDRESS_ENV) or "0.0.0.0",
        )
    log_key = log_name(stage_name(iteration, kind), ranks.rank,
                       None if shard.count == 1 else shard.index)  # fmt: skip
    log_file = directory / log_key
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    from tqdm.contrib.logging import logging_redirect_tqdm
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # one bar per stage
    store = open_store(run, directory)
    try:
        with logging_redirect_tqdm():  # log lines print above the stage's bar, not through it
            manifest = run_stage(run, store, kind, iteration, device=device, shard=shard)
    finally:  # a failed stage's figures too: they say how far it got
        if ranks.leader and (gateway := os.environ.get(PUSHGATEWAY_ENV)):
            group = {"run": run.metadata.name, "iteration": str(iteration), "stage": kind}
            if shard.count > 1:  # each shard its own group: one push must not replace another
                group["index"] = str(shard.index)
            prometheus.push(gateway, group)
        _keep_log(store, handler, log_file, log_key, warn)
    return StageProcess(manifest, ranks.rank)


def _keep_log(
    store: ArtifactStore,
    handler: logging.Handler,
    log_file: Path,
    key: str,
    warn: Callable[[str], None],
) -> None:
    """The stage's log into the store, at `key`; a store that does not answer does not hide
    the stage's own outcome."""
    handler.flush()
    try:
        store.upload_file(key, log_file)
    except (StoreError, OSError) as error:
        warn(f"the stage's log stays in {log_file}: {error}")


def linger() -> None:
    """Keep serving metrics one scrape interval (`MMZERO_METRICS_LINGER_SECONDS`) after a stage
    finishes, so that one last scrape sees the final figures of a short-lived pod."""
    seconds = float(os.environ.get(METRICS_LINGER_ENV) or 0)
    if os.environ.get(METRICS_PORT_ENV) and seconds > 0:
        time.sleep(seconds)
