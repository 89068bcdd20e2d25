"""`mmzero import` and `mmzero export`: a local model into a run's store as its base model, any
role's checkpoint out as a plain Hugging Face directory, on a local and on an S3 (MinIO) store."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers import AutoConfig

from mmzero_runtime.spec import MMZeroRun
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.execution.runner import open_store
from mmzero_runtime.stages.execution.transfer import export_checkpoint, import_base_model
from mmzero_runtime.storage.errors import ManifestError
from mmzero_runtime.storage.manifest import StageOutput, tree_digest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _run(uri: str, **storage: Any) -> MMZeroRun:
    return MMZeroRun.model_validate(
        {
            "metadata": {"name": "moved"},
            "spec": {"iterations": 2, "storage": {"uri": uri, **storage}},
        }
    )


def _same_tree(left: Path, right: Path) -> bool:
    names = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    other = sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file())
    return names == other and all(filecmp.cmp(left / n, right / n, shallow=False) for n in names)


def test_import_then_export_round_trips_every_role_and_iteration(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    run = _run(str(tmp_path / "runs"))
    store = open_store(run, tmp_path / "runs" / "moved")
    manifest = import_base_model(run, store, tiny_vlm_dir)
    assert manifest.digest("model") == tree_digest(tiny_vlm_dir, "model")
    assert import_base_model(run, store, tiny_vlm_dir) == manifest  # again: a no-op

    trained = StageOutput(store, "i1/solver-grpo", "i1-solver-grpo")
    trained.put_tree("model", tiny_vlm_dir)
    trained.put_bytes("model/extra.json", b'{"trained": true}')
    trained.commit()

    key, digest = export_checkpoint(run, store, "solver", None, tmp_path / "solver")
    assert key == "i1/solver-grpo/model" and (tmp_path / "solver" / "extra.json").exists()
    assert digest == tree_digest(tmp_path / "solver", "model")
    assert AutoConfig.from_pretrained(tmp_path / "solver").model_type == "qwen2_vl"
    key, _ = export_checkpoint(run, store, "coder", None, tmp_path / "coder")  # never trained
    assert key == "base/model" and _same_tree(tiny_vlm_dir, tmp_path / "coder")

    with pytest.raises(StageError, match="not empty"):
        export_checkpoint(run, store, "solver", 1, tmp_path / "solver")
    with pytest.raises(StageError, match=r"no proposer checkpoint after iteration 2"):
        export_checkpoint(run, store, "proposer", 2, tmp_path / "p2")
    (store.path("i1/solver-grpo/model") / "config.json").write_text("{}")  # bit rot
    with pytest.raises(ManifestError, match=r"i1/solver-grpo/model/config\.json: sha256"):
        export_checkpoint(run, store, "solver", 1, tmp_path / "rotten")
    assert not (tmp_path / "rotten").exists()


def test_a_run_keeps_its_base_model(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    run = _run(str(tmp_path / "runs"))
    store = open_store(run, tmp_path / "runs" / "moved")
    import_base_model(run, store, tiny_vlm_dir)
    other = tmp_path / "other"
    other.mkdir()
    for path in tiny_vlm_dir.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    (other / "generation_config.json").write_text('{"changed": true}')
    with pytest.raises(StageError, match="already has a base model"):
        import_base_model(run, store, other)


def test_import_export_and_serve_through_minio_from_the_command_line(
    tiny_vlm_dir: Path, tmp_path: Path, minio_server: Any, spawn_server: Any
) -> None:
    minio_server.make_bucket("transfer")
    spec_file = tmp_path / "run.yaml"
    run = _run("s3://transfer/runs", endpoint=minio_server.endpoint)
    spec_file.write_text(yaml.safe_dump(run.model_dump(mode="json")))
    env = {"AWS_ACCESS_KEY_ID": minio_server.access_key,
           "AWS_SECRET_ACCESS_KEY": minio_server.secret_key, "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}  # fmt: skip

    def mmzero(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mmzero_runtime.cli", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)

    done = mmzero("import", str(tiny_vlm_dir), "--spec", str(spec_file))
    assert done.returncode == 0, done.stderr
    assert tree_digest(tiny_vlm_dir, "model") in done.stdout
    out = tmp_path / "exported"
    done = mmzero("export", str(out), "--spec", str(spec_file), "--role", "solver")
    assert done.returncode == 0, done.stderr
    assert _same_tree(tiny_vlm_dir, out)
    refused = mmzero("import", str(tmp_path), "--spec", str(spec_file))
    assert refused.returncode != 0 and "error:" in refused.stderr

    # What a frozen-role server pod runs: the checkpoint from the store, its manifest's digest.
    mirror = str(tmp_path / "mirror")
    url = spawn_server("serve", "--key", "base/model", "--spec", str(spec_file),
                       "--run-dir", mirror, "--device", "cpu", env=env)  # fmt: skip
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        assert json.loads(response.read())["model"] == tree_digest(tiny_vlm_dir, "model")
