"""Checkpoint plumbing: RNG round trip, atomic directory swaps, trainer-state validation."""

from __future__ import annotations

import errno
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mmzero_runtime.training import checkpoint as ckpt
from mmzero_runtime.training.errors import CheckpointError


def test_rng_states_round_trip_through_a_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(ckpt.capture_rng(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng(ckpt.load_tensors(tmp_path / "rng.pt"))
    got = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def _write(target: Path, text: str) -> Path:
    partial = ckpt.prepare_partial(target)
    (partial / "a").write_text(text)
    return partial


def test_commit_partial_replaces_an_existing_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    for text in ("first", "second"):
        ckpt.commit_partial(_write(target, text), target)
    assert (target / "a").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no partial or retired copy left


def test_failed_write_is_discarded_and_the_old_checkpoint_kept(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    ckpt.commit_partial(_write(target, "old"), target)
    partial = _write(target, "half")
    assert ckpt.discard_partial(partial, target, RuntimeError("killed mid-write")) is None
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_disk_full_write_becomes_an_error_naming_the_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    error = ckpt.discard_partial(
        _write(target, "half"), target, OSError(errno.ENOSPC, "No space left on device")
    )
    assert error is not None and f"disk full while writing checkpoint {target}" in str(error)
    assert not list(tmp_path.iterdir())


def complete(directory: Path, state: object) -> Path:
    directory.mkdir()
    for name in (ckpt.OPTIMIZER_FILE, ckpt.RNG_FILE):
        (directory / name).write_bytes(b"")
    (directory / ckpt.STATE_FILE).write_text(json.dumps(state))
    return directory


@pytest.mark.parametrize(
    ("state", "message"),
    [
        pytest.param(
            {"format": 99, "step": 1, "history": [], "spec": {}, "reference": {}},
            "format 99",
            id="future-format",
        ),  # written by a newer mmzero
        pytest.param({"format": 1, "step": 1}, "incomplete", id="missing-keys"),  # edited by hand
        pytest.param([1, 2], "list", id="not-a-mapping"),  # not a trainer state at all
    ],
)
def test_read_state_rejects_foreign_states(tmp_path: Path, state: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        ckpt.read_state(complete(tmp_path / "ckpt", state))


def test_read_state_accepts_a_complete_state(tmp_path: Path) -> None:
    state = {"format": 1, "step": 3, "history": [], "spec": {}, "reference": {}}
    assert ckpt.read_state(complete(tmp_path / "ckpt", state))["step"] == 3
