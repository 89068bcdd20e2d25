"""Smoke tests of each `mmzero` command, run as a user runs them: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "run.yaml"

pytestmark = pytest.mark.integration


def mmzero(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmzero_runtime.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_spec_validate_good_file_exits_zero() -> None:
    result = mmzero("spec", "validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "ok (run tiny, 1 iteration(s))" in result.stdout


def test_spec_validate_bad_file_exits_two_naming_every_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: mmzero.dev/v1alpha1\nkind: MMZeroRun\nmetadata: {name: Bad_Name}\n"
        "spec:\n  roles: {coder: {group_size: 1}}\n  render: {timeout_seconds: -3}\n"
    )
    result = mmzero("spec", "validate", str(bad))
    assert result.returncode == 2
    assert "3 problem(s)" in result.stderr
    for path in ("metadata.name", "spec.roles.coder.group_size", "spec.render.timeout_seconds"):
        assert path in result.stderr
    assert "Traceback" not in result.stderr


def test_a_shard_outside_its_count_is_a_usage_error(tmp_path: Path) -> None:
    """Exit 2: the operator's podFailurePolicy fails such an attempt at once, with no retry."""
    args = ("--spec", str(EXAMPLE), "--iteration", "1", "--run-dir", str(tmp_path / "run"))
    result = mmzero("stage", "propose", *args, "--shards", "2", "--shard", "2")
    assert result.returncode == 2
    assert "--shard 2 must lie in [0, --shards 2)" in result.stderr
    assert not (tmp_path / "run").exists()


def test_spec_schema_prints_json_schema() -> None:
    result = mmzero("spec", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "MMZeroRun"


def test_spec_docs_write_reports_current_page(tmp_path: Path) -> None:
    copy = tmp_path / "spec.md"
    copy.write_text((ROOT / "docs" / "spec.md").read_text())
    result = mmzero("spec", "docs", "--write", str(copy))
    assert result.returncode == 0
    assert "already current" in result.stdout


def test_plan_prints_every_stage_with_inputs_and_outputs() -> None:
    result = mmzero("plan", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    for kind in (
        "proposer-grpo",
        "propose",
        "coder-data",
        "coder-grpo",
        "solver-data",
        "solver-grpo",
        "evaluate",
    ):
        assert f"i1-{kind}" in result.stdout
    assert "out: i1/coder-grpo/" in result.stdout
    assert "wall time: unknown" in result.stdout and "--calibrate" in result.stdout
    empty = mmzero("plan", str(EXAMPLE), "--calibrate", str(EXAMPLE.parent))
    assert empty.returncode == 1 and "no finished stage" in empty.stderr


def test_plan_estimates_memory_of_every_pod_group(tmp_path: Path, tiny_vlm_dir: Path) -> None:
    document = {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": "t"},
        "spec": {"model": str(tiny_vlm_dir), "iterations": 1},
    }
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps(document))
    result = mmzero("plan", str(run_file))
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("mem ")]
    assert [line[1] for line in lines[:3]] == ["trainer:proposer", "server:coder", "server:solver"]
    assert lines[0][3] == "GiB/GPU" and "optimizer" in " ".join(lines[0])
    assert len(lines) == 10  # render pods hold no model and print no line


def test_plan_without_a_local_model_still_plans_and_says_why_no_estimate(tmp_path: Path) -> None:
    document = {"apiVersion": "mmzero.dev/v1alpha1", "kind": "MMZeroRun",
                "metadata": {"name": "t"},
                "spec": {"model": str(tmp_path / "absent"), "iterations": 1}}  # fmt: skip
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps(document))
    result = mmzero("plan", str(run_file))
    assert result.returncode == 0 and "i1-evaluate" in result.stdout
    assert "(no memory estimates: model" in result.stdout and "does not exist" in result.stdout


def test_plan_refuses_a_spec_whose_pods_exceed_their_gpus(
    tmp_path: Path, tiny_vlm_dir: Path
) -> None:
    document = {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": "t"},
        "spec": {"model": str(tiny_vlm_dir), "iterations": 1,
                 "resources": {"gpu_memory_gib": 0.001}},
    }  # fmt: skip
    run_file = tmp_path / "run.yaml"
    run_file.write_text(json.dumps(document))
    result = mmzero("plan", str(run_file))
    assert result.returncode == 1
    assert "exceeds resources.gpu_memory_gib (0.001 GiB)" in result.stderr
    assert "i1-proposer-grpo trainer:proposer:" in result.stderr


def test_serve_answers_on_http_with_the_checkpoints_digest(
    tiny_vlm_dir: Path, spawn_server: Any
) -> None:
    from mmzero_runtime.generation import GenerationRequest
    from mmzero_runtime.generation.http import HTTPGenerator
    from mmzero_runtime.roles import build_proposer_messages
    from mmzero_runtime.spec import SamplingSpec
    from mmzero_runtime.storage.manifest import tree_digest

    url = spawn_server("serve", str(tiny_vlm_dir), "--device", "cpu", "--max-tokens", "16")
    digest = tree_digest(tiny_vlm_dir, "model")
    client = HTTPGenerator(url, model_digest=digest)
    sampling = SamplingSpec(temperature=1.0, max_tokens=4)
    request = GenerationRequest("r", build_proposer_messages("maps"), (), 2, sampling, 5)
    (result,) = client.generate([request])
    assert result.ok and len(result.samples) == 2 and result.model_digest == digest
