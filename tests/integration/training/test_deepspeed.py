"""The DeepSpeed ZeRO-3 engine (the GPU image's trainer path) on a CPU: the same GRPO updates as
the torch engine, and a checkpoint that saves and resumes. DeepSpeed comes from the lock's
`deepspeed` extra, which `make setup` installs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rollouts import UNCLIPPED, make_rollouts

from mmzero_runtime.models.loading import load_vlm
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.training.trainer import GRPOTrainer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

HERE = Path(__file__).resolve().parent


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    """The parameters of the HF model saved in `directory`, by module name."""
    loaded = load_vlm(directory, image_spec=TINY_IMAGE, dtype=torch.float32, device="cpu")
    return {name: p.detach() for name, p in loaded.model.named_parameters()}


def _gap(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], start: dict[str, torch.Tensor]
) -> float:
    """|got - want| / |want - start| over all parameters: how far apart two updates are."""
    apart = sum(float(((got[n] - want[n]) ** 2).sum()) for n in want)
    moved = sum(float(((want[n] - start[n]) ** 2).sum()) for n in want)
    return (apart / moved) ** 0.5


def test_zero3_steps_match_the_torch_engine_and_resume(
    tiny_vlm_dir: Path, chart_png: Path, tmp_path: Path
) -> None:
    pytest.importorskip("deepspeed", reason="install the lock's deepspeed extra (make setup)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # One process as a launcher would start it; gloo on loopback.
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(HERE)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(HERE / "deepspeed_step.py"), str(tiny_vlm_dir), str(chart_png),
         str(tmp_path)], env=env, capture_output=True, text=True, timeout=800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    zero = json.loads((tmp_path / "stats.json").read_text())

    torch_engine = GRPOTrainer.from_pretrained(tiny_vlm_dir, UNCLIPPED, TINY_IMAGE, device="cpu",
                                               backend="torch")  # fmt: skip
    expected = [
        torch_engine.step(make_rollouts(chart_png, seed, text_group=False)) for seed in (0, 1)
    ]
    after_two = {n: p.detach().clone() for n, p in torch_engine.model.named_parameters()}
    expected.append(torch_engine.step(make_rollouts(chart_png, 2, text_group=False)))

    # Two updates of two micro-batches per step: the accumulation across micro-batches is what
    # an earlier version got wrong. Unclipped, because ZeRO-3 counts the tied embedding and LM
    # head twice in its gradient norm (the torch engine once), so clipping would differ.
    for got, want in zip(zero, expected, strict=True):
        assert got["loss/total"] == pytest.approx(want["loss/total"], rel=1e-5, abs=1e-7)
        assert got["step/updates"] == want["step/updates"] == 2
    # The updates themselves, as one vector (elements whose gradient is near Adam's eps move by
    # noise either way). Every update has an image: in a text-only one the vision tower has no
    # gradient, and DeepSpeed steps it on momentum where torch's AdamW skips it.
    start = _weights(tiny_vlm_dir)
    final = {n: p.detach() for n, p in torch_engine.model.named_parameters()}
    assert _gap(_weights(tmp_path / "checkpoint"), after_two, start) < 1e-2  # ZeRO-3 gathered
    assert _gap(_weights(tmp_path / "resumed"), final, start) < 1e-2  # optimizer state restored
