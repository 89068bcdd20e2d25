"""Fixtures of the executor tests: a quick variant of the example spec and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

QuickRunFile = Callable[..., Path]


def _quick_run_file(directory: Path, model: Path, proposer_steps: int = 3) -> Path:
    """`examples/run.yaml` on `model`, with a Proposer GRPO short enough for a test."""
    document = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())
    document["spec"]["model"] = str(model)
    proposer = document["spec"]["roles"]["proposer"]
    proposer.update(
        steps=proposer_steps, rollout_batch_size=2, global_batch_size=2, max_response_tokens=48
    )
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@dataclass
class Cli:
    """Runs `mmzero ARGS` with this interpreter and one torch thread, in its own process group
    (a test can kill it and its stage child together), its output in a log file (a pipe
    would fill up and stall a long run)."""

    directory: Path
    started: int = 0

    def start(self, *args: str, prefix: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], Path]:
        self.started += 1
        log = self.directory / f"mmzero-{self.started}.log"
        command = [*prefix, sys.executable, "-m", "mmzero_runtime.cli", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, env=env, start_new_session=True, stdout=sink, stderr=subprocess.STDOUT
            )
        return process, log

    def run(self, *args: str, prefix: Sequence[str] = (), timeout: float = 900) -> tuple[int, str]:
        """Exit status and output of a finished `mmzero ARGS`."""
        process, log = self.start(*args, prefix=prefix)
        return process.wait(timeout), log.read_text(errors="replace")


@pytest.fixture
def quick_run_file() -> QuickRunFile:
    return _quick_run_file


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
