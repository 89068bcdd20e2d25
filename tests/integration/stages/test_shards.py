"""Batch stages in shards, as the operator runs them (`mmzero stage KIND --shards N --shard K`,
one pod per block): the last shard to finish merges, and the merged stage has exactly the
files the unsharded stage writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import Cli, QuickRunFile

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def _files(run_dir: Path, stage: str) -> dict[str, str]:
    manifest = json.loads((run_dir / "i1" / stage / "MANIFEST.json").read_text())
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def test_sharded_batch_stages_merge_to_the_unsharded_files(
    tiny_vlm_dir: Path, tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    run_file = quick_run_file(tmp_path, tiny_vlm_dir, proposer_steps=1)
    document = yaml.safe_load(run_file.read_text())
    document["spec"]["data"].update(proposals_for_coder=6, proposals_for_solver=3)
    run_file.write_text(yaml.safe_dump(document))
    base, whole, sharded = tmp_path / "base", tmp_path / "whole", tmp_path / "sharded"
    where = ("--device", "cpu", "--run-dir")
    code, output = cli.run("run", str(run_file), "--until", "proposer-grpo", *where, str(base))
    assert code == 0, output[-3000:]
    shutil.copytree(base, whole)
    shutil.copytree(base, sharded)

    code, output = cli.run("run", str(run_file), "--until", "coder-data", *where, str(whole))
    assert code == 0, output[-3000:]

    def shard(kind: str, index: int, count: int) -> str:
        code, output = cli.run("stage", kind, "--spec", str(run_file), "--iteration", "1",
                               "--shards", str(count), "--shard", str(index), *where,
                               str(sharded))  # fmt: skip
        assert code == 0, output[-3000:]
        return output

    assert "shard 1 of 2 done" in shard("propose", 1, 2)
    assert (sharded / "shards" / "i1" / "propose" / "001" / "MANIFEST.json").is_file()
    assert not (sharded / "i1" / "propose" / "MANIFEST.json").exists()  # shard 0 still to do
    shard("propose", 0, 2)  # the last: it merges
    for index in (2, 0, 1):  # out of order; three blocks of six proposals
        shard("coder-data", index, 3)

    for stage in ("propose", "coder-data"):
        assert _files(sharded, stage) == _files(whole, stage), stage
        meta = json.loads((sharded / "i1" / stage / "MANIFEST.json").read_text())["meta"]
        assert meta["shards"] in (2, 3) and meta["inputs"]
    assert not list(sharded.glob("shards/**/*.*"))  # merged shards are deleted
    manifest = (sharded / "i1" / "coder-data" / "MANIFEST.json").read_bytes()
    assert "coder-data: done (" in shard("coder-data", 1, 3)  # a retried pod finds it done
    assert (sharded / "i1" / "coder-data" / "MANIFEST.json").read_bytes() == manifest
