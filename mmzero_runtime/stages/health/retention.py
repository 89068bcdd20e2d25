"""Checkpoint retention: `storage.keep_checkpoints` keeps each role's newest N models.

A GRPO stage publishes one model per role per iteration; a long run on a large VLM fills a
bucket with them. After each GRPO stage, models beyond the newest N of their role are removed,
except those a stage still to run reads (the chaining of §2.1 reads the previous iteration's
models) and the base model. The stage's manifest and its other files stay, so the stage is
still done; a `PRUNED.json` beside the removed model says why, and `mmzero export` reports it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.storage.manifest import read_manifest
from mmzero_runtime.storage.store import ArtifactStore

log = logging.getLogger(__name__)

PRUNED_FILE = "PRUNED.json"
"""Written under a GRPO stage's prefix before its model is removed."""


def prunable(spec: RunSpec, done: Iterable[str]) -> list[str]:
    """Checkpoint keys that retention removes once the stages in `done` have finished.

    >>> from mmzero_runtime.spec import RunSpec
    >>> spec = RunSpec(iterations=3, storage={"keep_checkpoints": 1})
    >>> done = [s.name for s in all_stages(spec) if s.iteration == 1] + ["i2-proposer-grpo"]
    >>> prunable(spec, done)  # i2's Coder data stage still reads the Coder of iteration 1
    ['i1/proposer-grpo/model']
    """
    keep = spec.storage.keep_checkpoints
    if keep == 0:
        return []
    finished = set(done)
    needed = {
        key for stage in all_stages(spec) if stage.name not in finished for _, key in stage.inputs
    }
    trained = [s for s in all_stages(spec) if s.kind.endswith("-grpo") and s.name in finished]
    removed = []
    for stage in trained:
        newer = sum(o.role == stage.role and o.iteration > stage.iteration for o in trained)
        key = f"{stage.output}/{keys.MODEL_DIR}"
        if newer >= keep and key not in needed:
            removed.append(key)
    return removed


def pruned_reason(store: ArtifactStore, key: str) -> str | None:
    """Why the checkpoint `key` was removed, or None when retention has not removed it."""
    marker = f"{keys.producer_prefix(key)}/{PRUNED_FILE}"
    if not store.exists(marker):
        return None
    try:
        return str(json.loads(store.read_bytes(marker))["reason"])
    except (ValueError, KeyError, TypeError, RecursionError):  # the marker's presence decides
        return f"removed by retention ({marker} gives no readable reason)"


def prune(spec: RunSpec, store: ArtifactStore) -> list[str]:
    """Remove the checkpoints `prunable` names (idempotent); return their keys."""
    if spec.storage.keep_checkpoints == 0:
        return []
    done = [s.name for s in all_stages(spec) if read_manifest(store, s.output) is not None]
    removed = []
    for key in prunable(spec, done):
        if pruned_reason(store, key) is not None and not store.list(key):
            continue
        reason = (
            f"removed by storage.keep_checkpoints={spec.storage.keep_checkpoints} "
            f"(each role keeps its newest {spec.storage.keep_checkpoints})"
        )
        marker = {"removed": keys.MODEL_DIR, "reason": reason}
        store.write_bytes(f"{keys.producer_prefix(key)}/{PRUNED_FILE}", json.dumps(marker).encode())
        store.delete_prefix(key)
        log.info("checkpoint removed key=%s keep=%d", key, spec.storage.keep_checkpoints)
        removed.append(key)
    return removed
