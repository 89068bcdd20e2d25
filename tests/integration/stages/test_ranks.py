"""A GRPO stage as two processes under torchrun (how a multi-GPU or multi-node trainer pod
starts it), on CPUs with gloo and the DeepSpeed ZeRO-3 engine: the ranks share each step's
sampling, rank 0 alone rewards and publishes, and the rollouts are the samples one process
draws."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Cli, QuickRunFile

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "i1" / "proposer-grpo" / "rewards.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_two_ranks_share_rollouts_and_rank_zero_publishes_once(
    tiny_vlm_dir: Path, tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    pytest.importorskip("deepspeed", reason="install the lock's deepspeed extra (make setup)")
    run_file = quick_run_file(tmp_path, tiny_vlm_dir, proposer_steps=1)
    one, two = tmp_path / "one", tmp_path / "two"
    stage = ("stage", "proposer-grpo", "--spec", str(run_file), "--iteration", "1",
             "--device", "cpu", "--run-dir")  # fmt: skip

    code, output = cli.run(*stage, str(one))
    assert code == 0, output[-3000:]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", "-m", "mmzero_runtime.cli", *stage, str(two)]  # fmt: skip
    done = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rank 1 done; rank 0 publishes" in done.stdout

    # The same samples: each rank drew its slice of the step's requests with the same
    # per-request seeds and weights, and rank 0 rewarded them all.
    by_id = {row["id"]: row for row in _rows(one)}
    shared = _rows(two)
    assert sorted(row["id"] for row in shared) == sorted(by_id)
    for row in shared:
        assert row["response"] == by_id[row["id"]]["response"], row["id"]
        assert row["reward"] == by_id[row["id"]]["reward"]

    manifest = json.loads((two / "i1" / "proposer-grpo" / "MANIFEST.json").read_text())
    assert "model/model.safetensors" in manifest["files"]
    step = json.loads((two / "i1" / "proposer-grpo" / "steps.jsonl").read_text().splitlines()[0])
    assert step["step"] == 1 and step["step/updates"] >= 1
    logs = sorted(p.name for p in (two / "logs").iterdir())
    assert logs == ["i1-proposer-grpo.log", "i1-proposer-grpo.rank1.log"]
    follower = (two / "logs" / "i1-proposer-grpo.rank1.log").read_text()
    assert "rank=1 sampled 1 of 2 requests" in follower  # its half of the step's prompts
    assert not (two / ".work" / "i1-proposer-grpo").exists()  # scratch gone after publishing
