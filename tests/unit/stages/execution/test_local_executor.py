"""The local executor's bookkeeping: pinned specs, finished stages, status, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmzero_runtime.spec import MMZeroRun, RunSpec, load_run
from mmzero_runtime.stages.errors import ProvenanceError, StageError
from mmzero_runtime.stages.execution.local import (
    check_alarms,
    finished,
    load_effective,
    spec_hash,
    status_lines,
    write_run_manifest,
)
from mmzero_runtime.stages.execution.runner import find_stage, pin_run, run_dir
from mmzero_runtime.stages.graph.keys import RUN_FILE
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.kinds.grpo_loop import step_prompts, whole_groups
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.provenance import check_producer
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.store import LocalStore
from mmzero_runtime.training.batch import Rollout

ROOT = Path(__file__).resolve().parents[4]


def _run(iterations: int = 1, **spec: object) -> MMZeroRun:
    return MMZeroRun(spec=RunSpec(iterations=iterations, **spec))  # type: ignore[arg-type]


def _finish(store: LocalStore, prefix: str, files: dict[str, bytes]) -> None:
    output = StageOutput(store, prefix, prefix)
    for name, data in files.items():
        output.put_bytes(name, data)
    output.commit()


def test_pinned_run_accepts_more_iterations_and_refuses_another_method(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    pin_run(_run(1), store)
    pin_run(_run(3), store)  # extending a run is allowed
    assert load_run(tmp_path / RUN_FILE).spec.iterations == 3
    allowed = r"only spec\.iterations, spec\.suspend, spec\.cluster, spec\.health may change"
    with pytest.raises(StageError, match=allowed):
        pin_run(_run(3, seed=7), store)


def test_load_effective_applies_iterations_override() -> None:
    run = load_effective(ROOT / "examples" / "run.yaml", 4)
    assert run.spec.iterations == 4
    assert spec_hash(run) != spec_hash(load_effective(ROOT / "examples" / "run.yaml", None))


def test_finished_and_status_follow_manifests(tmp_path: Path) -> None:
    run = _run(1)
    store = LocalStore(tmp_path)
    pin_run(run, store)
    assert finished(run, store) == []
    _finish(store, "i1/proposer-grpo", {"model/w.bin": b"1"})
    (tmp_path / ".work" / "i1-propose" / "steps").mkdir(parents=True)
    assert finished(run, store) == ["i1-proposer-grpo"]
    lines = status_lines(tmp_path)
    assert lines[0] == "run mmzero: 1/7 stages done"
    assert "i1-proposer-grpo     done" in lines[1]
    assert "i1-propose" in lines[2] and "started" in lines[2]
    assert "waiting" in lines[3]


def test_alarms_of_finished_stages_warn_once_or_stop_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path)
    collapsed = json.dumps({"figures": {"diversity/caption_distinct_share": 0.05}}).encode()
    _finish(store, "i1/proposer-grpo", {"model/w.bin": b"1"})
    _finish(store, "i1/propose", {"health.json": collapsed})
    warn = _run(1)
    pin_run(warn, store)
    told: set[str] = set()
    check_alarms(warn, store, told)
    check_alarms(warn, store, told)
    assert caplog.text.count("alarm collapse at i1-propose") == 1
    assert any("alarm collapse at i1-propose" in line for line in status_lines(tmp_path))
    stop = _run(1, health={"on_alarm": "stop"})
    pin_run(stop, store)  # spec.health may change in a started run
    with pytest.raises(StageError, match=r"stopped by 1 alarm.*rerun to go on"):
        check_alarms(stop, store, set())
    check_alarms(_run(1, health={"on_alarm": "stop", "min_distinct_share": 0.01}), store, set())


def test_run_manifest_records_checkpoint_digests(tmp_path: Path) -> None:
    run = _run(1)
    store = LocalStore(tmp_path)
    _finish(store, "base", {"model/w.bin": b"0"})
    _finish(store, "i1/proposer-grpo", {"model/w.bin": b"1", "rewards.jsonl": b"{}\n"})
    body = write_run_manifest(run, store)
    assert body["spec_hash"] == spec_hash(run)
    assert body["stages"]["base"]["checkpoint"].startswith("sha256:")
    assert body["stages"]["i1/proposer-grpo"]["checkpoint"] != body["stages"]["base"]["checkpoint"]


def test_find_stage_outside_the_run_names_the_fix() -> None:
    assert find_stage(_run(2), "coder-grpo", 2).name == "i2-coder-grpo"
    with pytest.raises(StageError, match=r"raise spec\.iterations"):
        find_stage(_run(1), "coder-grpo", 2)


def test_run_dir_is_the_store_or_a_mirror_of_an_s3_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = MMZeroRun.model_validate({"spec": {"storage": {"uri": "s3://bucket/runs"}}})
    assert run_dir(run) == tmp_path / "cache" / "mmzero" / "mirror" / "bucket" / "runs" / "mmzero"
    assert run_dir(_run(1), tmp_path) == tmp_path / "runs" / "mmzero"


def test_step_prompts_cycle_through_the_data() -> None:
    assert step_prompts([1, 2, 3], 1, 2) == [1, 2]
    assert step_prompts([1, 2, 3], 2, 2) == [3, 1]
    with pytest.raises(StageError, match="no training prompts"):
        step_prompts([], 1, 2)


def test_whole_groups_lone_rewarded_response_is_left_out_not_fatal() -> None:
    # group a kept 2 rewarded responses, group b only 1 (its siblings' rewards were None)
    rollouts = [Rollout(f"{g}{k}", g, (), None, (1,), float(k)) for g, k in ("a0", "a1", "b0")]
    kept, lone = whole_groups(rollouts)
    assert ([r.request_id for r in kept], lone) == (["a0", "a1"], 1)


def test_records_from_another_checkpoint_are_refused(tmp_path: Path) -> None:
    run = _run(1)
    store = LocalStore(tmp_path)
    _finish(store, "i1/proposer-grpo", {"model/w.bin": b"1"})
    ctx = StageContext(run, store, find_stage(run, "coder-data", 1))
    good = ctx.digest_of("i1/proposer-grpo/model")
    check_producer(ctx, [{"id": "a", "producer": good}], "producer", "i1/proposer-grpo/model", "x")
    with pytest.raises(ProvenanceError, match="item 'b' was made by checkpoint 'sha256:other'"):
        check_producer(
            ctx,
            [{"id": "b", "producer": "sha256:other"}],
            "producer",
            "i1/proposer-grpo/model",
            "x",
        )


def test_every_stage_kind_has_a_module() -> None:
    import importlib

    for stage in all_stages(_run(1).spec):
        module = importlib.import_module(
            f"mmzero_runtime.stages.kinds.{stage.kind.replace('-', '_')}"
        )
        assert callable(module.run)
