"""The local executor on a real tiny VLM: kill -9 mid-stage and resume gives the same bytes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Cli, QuickRunFile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _stage_files(run_dir: Path) -> dict[str, str]:
    manifest = json.loads((run_dir / "i1" / "proposer-grpo" / "MANIFEST.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def test_stage_killed_mid_run_resumes_to_identical_artifacts(
    tiny_vlm_dir: Path, tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    args = ("--until", "proposer-grpo", "--device", "cpu", "--run-dir")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for directory in (straight, killed):
        directory.mkdir()
    run_file = quick_run_file(tmp_path, tiny_vlm_dir)

    code, output = cli.run("run", str(run_file), *args, str(straight))
    assert code == 0, output[-3000:]

    process, _ = cli.start("run", str(run_file), *args, str(killed))
    first_step = killed / ".work" / "i1-proposer-grpo" / "steps" / "step-0001.jsonl"
    deadline = time.monotonic() + 900
    while not first_step.exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 15 minutes"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the executor and its stage process, as kill -9 would
    process.wait(60)
    assert not (killed / "i1" / "proposer-grpo" / "MANIFEST.json").exists()

    code, output = cli.run("run", str(run_file), *args, str(killed))
    assert code == 0, output[-3000:]
    assert _stage_files(killed) == _stage_files(straight)
