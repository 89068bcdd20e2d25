"""Models in and out of a run's store: `mmzero import` puts a local Hugging Face checkpoint in
as the base model; `mmzero export` writes any role's checkpoint of any iteration out as a plain
Hugging Face directory (config, weights, tokenizer, processor), ready for `vllm serve`. Both
check content digests, so what leaves is exactly what the run trained.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from mmzero_runtime.spec import MMZeroRun
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.execution.runner import versions
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.health.retention import pruned_reason
from mmzero_runtime.storage.manifest import (
    Manifest,
    StageOutput,
    read_manifest,
    tree_digest,
    verify,
)
from mmzero_runtime.storage.store import ArtifactStore

log = logging.getLogger(__name__)


def import_base_model(run: MMZeroRun, store: ArtifactStore, source: Path | None = None) -> Manifest:
    """Copy `source` (default: `spec.model`) into the store as the base model, once
    (`base/MANIFEST.json`); a different model for a run that has one is refused."""
    from mmzero_runtime.models.loading import check_config, resolve_ref

    existing = read_manifest(store, "base")
    if existing is not None:
        stored = existing.digest(keys.MODEL_DIR)
        if source is not None and stored != tree_digest(source, keys.MODEL_DIR):
            raise StageError(
                f"run {run.metadata.name} already has a base model ({existing.meta.get('source')}"
                f", {stored}); a run keeps its base model: import the new one into a new run "
                "(another metadata.name)"
            )
        return existing
    path = source or resolve_ref(run.spec.model)
    check_config(path)  # a text-only or unsupported model is refused before anything is stored
    output = StageOutput(store, "base", "base")
    log.info("importing base model source=%s", path)
    output.put_tree(keys.MODEL_DIR, path)
    origin = str(source) if source is not None else run.spec.model
    return output.commit({"stage": "base", "source": origin, "versions": versions()})


def finished_checkpoints(run: MMZeroRun, store: ArtifactStore, role: keys.Role) -> list[int]:
    """Iterations whose GRPO stage of `role` has finished, oldest first."""
    return [
        i for i in range(1, run.spec.iterations + 1)
        if read_manifest(store, keys.stage_prefix(i, f"{role}-grpo")) is not None
    ]  # fmt: skip


def latest_checkpoint(run: MMZeroRun, store: ArtifactStore, role: keys.Role) -> int:
    """The last iteration whose GRPO stage of `role` has finished (0: only the base model)."""
    return max(finished_checkpoints(run, store, role), default=0)


def export_checkpoint(
    run: MMZeroRun,
    store: ArtifactStore,
    role: keys.Role,
    iteration: int | None,
    out: Path,
    digest_file: Path | None = None,
) -> tuple[str, str]:
    """Write the checkpoint of `role` after `iteration` (default: the latest) to `out`, a new
    directory; return (artifact key, digest). Every file is checked against its manifest. The
    digest goes to `digest_file` too when given (for `vllm serve --served-model-name`, which
    the stages check)."""
    if out.exists() and not out.is_dir():
        raise StageError(f"{out} exists and is not a directory; export into a new directory")
    if out.exists() and any(out.iterdir()):
        raise StageError(f"{out} exists and is not empty; export into a new directory")
    iteration = latest_checkpoint(run, store, role) if iteration is None else iteration
    if not 0 <= iteration <= run.spec.iterations:
        raise StageError(
            f"run {run.metadata.name}: iteration {iteration} is outside the run; checkpoints "
            f"follow iterations from 0 (the base model) to {run.spec.iterations}: pass one of "
            "those, or no --iteration for the latest"
        )
    key = keys.checkpoint_key(role, iteration)
    prefix = keys.producer_prefix(key)
    if read_manifest(store, prefix) is None:
        raise StageError(
            f"run {run.metadata.name}: no {role} checkpoint after iteration {iteration} "
            f"({prefix} has not finished); `mmzero status` shows what has"
        )
    pruned = pruned_reason(store, key)
    if pruned is not None:
        kept = [
            i for i in finished_checkpoints(run, store, role)
            if pruned_reason(store, keys.checkpoint_key(role, i)) is None
        ]  # fmt: skip
        raise StageError(
            f"run {run.metadata.name}: the {role} checkpoint after iteration {iteration} was "
            f"{pruned}; kept iterations: {', '.join(map(str, kept)) or 'none'}"
        )
    manifest = verify(store, prefix)
    source = store.path(key)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    except OSError as error:  # a parent that is a file, or not writable
        raise StageError(
            f"cannot export into {out}: {error.strerror or error} ({error.filename}); pass a "
            "new directory in a writable place"
        ) from None
    try:
        for name in sorted(manifest.files):
            if name.startswith(f"{keys.MODEL_DIR}/"):
                target = staging / name.removeprefix(f"{keys.MODEL_DIR}/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name.removeprefix(f"{keys.MODEL_DIR}/"), target)
        digest = manifest.digest(keys.MODEL_DIR)
        if tree_digest(staging, keys.MODEL_DIR) != digest:
            raise StageError(f"{key}: the exported files do not match the manifest; retry")
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported checkpoint key=%s digest=%s to=%s", key, digest, out)
    if digest_file is not None:
        digest_file.write_text(digest)
    return key, digest


def served_model(model: str, digest: str | None) -> tuple[Path, str]:
    """A model directory (or `builtin:tiny`) to serve, and the digest it answers as: `digest`,
    else the one a run manifest records for these files as a checkpoint."""
    from mmzero_runtime.models.loading import resolve_ref

    path = resolve_ref(model)
    return path, digest or tree_digest(path, keys.MODEL_DIR)


def served_checkpoint(store: ArtifactStore, key: str, wait_seconds: float) -> tuple[Path, str]:
    """The checkpoint at `key` of a run's store, checked against its stage's manifest, and its
    digest. A server started with its stage may come up before the checkpoint is stored (the
    first stage imports the base model): it waits up to `wait_seconds` for the manifest rather
    than crash-looping."""
    prefix = keys.producer_prefix(key)
    deadline = time.monotonic() + wait_seconds
    while read_manifest(store, prefix) is None:
        if time.monotonic() > deadline:
            raise StageError(f"{store}: {prefix} has no manifest after {wait_seconds:.0f} s")
        log.info("waiting for %s in %s", prefix, store)
        time.sleep(5)
    digest = verify(store, prefix).digest(key.removeprefix(prefix + "/"))
    return store.path(key), digest
