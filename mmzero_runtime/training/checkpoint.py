"""Checkpoint files besides the model: trainer state, RNG states, atomic directory swaps.

A checkpoint is a directory that `from_pretrained` can load as a model (safetensors + processor)
plus `optimizer.pt`, `rng.pt` and `trainer_state.json`. It is written in a hidden sibling
directory and renamed into place, state file last, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmzero_runtime.training.errors import CheckpointError

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
FORMAT_VERSION = 1


def rng_file(rank: int) -> str:
    """RNG file of a process: `rng.pt` for rank 0, `rng-rank<r>.pt` for the others."""
    return RNG_FILE if rank == 0 else f"rng-rank{rank}.pt"


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and every CUDA device) generator states."""
    numpy_state = np.random.get_state(legacy=False)
    assert isinstance(numpy_state, dict)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "cached_gaussian": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Set every generator to the states `capture_rng` returned."""
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    saved = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": saved["bit_generator"],
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["cached_gaussian"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(model: nn.Module) -> str:
    """A cheap identity of a model's weights: names, shapes and float64 sums, hashed."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            total = tensor.double().sum().item() if tensor.is_floating_point() else 0.0
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:{total!r};".encode())
    return digest.hexdigest()[:32]


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(root, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prepare_partial(target: Path) -> Path:
    """A fresh, empty hidden sibling of `target` to write a checkpoint into."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    return partial


def commit_partial(partial: Path, target: Path) -> None:
    """Flush `partial` to disk and swap it into place of `target` (replacing an old one)."""
    _fsync_tree(partial)
    if target.exists():
        retired = target.parent / f".{target.name}.old"
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(target, retired)
        os.rename(partial, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(partial, target)


def _disk_full(error: BaseException, directory: Path) -> bool:
    """True when a write failed for want of space. torch.save and safetensors report it in
    their own exception types without an errno, so the OS's message or a filesystem left with
    under 1 MiB also counts."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    if os.strerror(errno.ENOSPC) in str(error):  # safetensors: "... (os error 28)"
        return True
    try:
        return shutil.disk_usage(directory).free < (1 << 20)
    except OSError:
        return False


def discard_partial(partial: Path, target: Path, error: BaseException) -> CheckpointError | None:
    """Delete a checkpoint whose write failed; the error to raise instead when the disk is full.

    The previous checkpoint at `target` is untouched, so a rerun with space resumes from it.
    """
    full = _disk_full(error, partial if partial.exists() else target.parent)
    shutil.rmtree(partial, ignore_errors=True)
    if not full:
        return None
    return CheckpointError(
        f"disk full while writing checkpoint {target}; free space (or move the run directory), "
        "then rerun the same command: the last complete checkpoint and every finished stage "
        "are kept"
    )


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write `trainer_state.json` (last file of a checkpoint: its presence marks completeness)."""
    text = json.dumps({"format": FORMAT_VERSION, **state}, indent=1, sort_keys=True)
    (directory / STATE_FILE).write_text(text + "\n", encoding="utf-8")


def read_state(directory: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint, or a CheckpointError saying what is wrong."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory; check the path")
    missing = [
        name for name in (STATE_FILE, OPTIMIZER_FILE, RNG_FILE) if not (directory / name).is_file()
    ]
    if missing:
        raise CheckpointError(
            f"{directory}: incomplete checkpoint, missing {', '.join(missing)}; resume from an "
            "earlier checkpoint (a trainer writes checkpoints atomically, so this one was "
            "copied or edited by hand)"
        )
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # not UTF-8, not JSON, an integer of 5000 digits
        raise CheckpointError(
            f"{path}: unreadable trainer state ({error}); resume from an earlier checkpoint"
        ) from None
    except RecursionError:
        raise CheckpointError(
            f"{path}: unreadable trainer state (nested too deeply); resume from an earlier "
            "checkpoint"
        ) from None
    if isinstance(state, dict) and not {"step", "history", "spec", "reference"} <= state.keys():
        state = {"format": "incomplete"}
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path}: trainer state format {found!r}, expected {FORMAT_VERSION}; this checkpoint "
            "was written by another version of mmzero"
        )
    for key, (kind, what) in _STATE_FIELDS.items():
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(
                f"{path}: unreadable trainer state ({key}: expected {what}, got "
                f"{type(value).__name__}); resume from an earlier checkpoint"
            )
    state["reference"] = {"source": None, "fingerprint": None, **state["reference"]}
    return state


_STATE_FIELDS: dict[str, tuple[type, str]] = {
    "step": (int, "an integer"),
    "history": (list, "a list"),
    "spec": (dict, "a mapping"),
    "reference": (dict, "a mapping"),
}
"""The fields `resume` reads, and their types: a state is refused here, not mid-resume."""


def check_compatible(
    directory: Path,
    state: dict[str, Any],
    *,
    reference_fingerprint: str | None,
    reference_source: Path | None,
    world_size: int,
) -> None:
    """Raise unless the resuming trainer has the checkpoint's reference model and process count."""
    expected = state["reference"]["fingerprint"]
    if reference_fingerprint is not None and expected not in (None, reference_fingerprint):
        raise CheckpointError(
            f"{directory}: the reference model at {reference_source} is not the one this "
            "checkpoint was trained against; pass reference= with the role's initial weights"
        )
    if state.get("world_size", 1) != world_size:
        raise CheckpointError(
            f"{directory}: saved by {state.get('world_size')} processes, resumed by "
            f"{world_size}; resume with the same number of processes"
        )


def load_tensors(path: Path) -> Any:
    """`torch.load` of a checkpoint file (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt pickle/zip
        detail = " ".join(str(error).split()).split(". ")[0]  # torch's own advice does not apply
        raise CheckpointError(
            f"{path}: corrupt checkpoint file ({type(error).__name__}: {detail}); resume from an "
            "earlier checkpoint"
        ) from None
