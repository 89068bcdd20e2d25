"""The local executor on a real tiny VLM: kill -9 mid-stage and resume gives the same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run_file(directory: Path, model: Path) -> Path:
    document = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())
    document["spec"]["model"] = str(model)
    proposer = document["spec"]["roles"]["proposer"]
    proposer.update(steps=3, rollout_batch_size=2, global_batch_size=2, max_response_tokens=48)
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _mmzero(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mmzero_runtime.cli", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)


def _stage_files(run_dir: Path) -> dict[str, str]:
    manifest = json.loads((run_dir / "i1" / "proposer-grpo" / "MANIFEST.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def test_stage_killed_mid_run_resumes_to_identical_artifacts(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    args = ("--until", "proposer-grpo", "--device", "cpu", "--run-dir")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for directory in (straight, killed):
        directory.mkdir()
    run_file = _run_file(tmp_path, tiny_vlm_dir)

    assert _mmzero("run", str(run_file), *args, str(straight), cwd=tmp_path).wait(900) == 0

    process = _mmzero("run", str(run_file), *args, str(killed), cwd=tmp_path)
    first_step = killed / ".work" / "i1-proposer-grpo" / "steps" / "step-0001.jsonl"
    deadline = time.monotonic() + 900
    while not first_step.exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 15 minutes"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the executor and its stage process, as kill -9 would
    process.wait(60)
    assert not (killed / "i1" / "proposer-grpo" / "MANIFEST.json").exists()

    assert _mmzero("run", str(run_file), *args, str(killed), cwd=tmp_path).wait(900) == 0
    assert _stage_files(killed) == _stage_files(straight)
