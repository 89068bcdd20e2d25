"""`storage.keep_checkpoints`: older models go, but never one a stage still to run reads, never a
role's newest, never the base model; what went is said by `mmzero export`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzero_runtime.spec import MMZeroRun, RunSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.execution.transfer import export_checkpoint
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.health.retention import prunable, prune, pruned_reason
from mmzero_runtime.storage.manifest import StageOutput, read_manifest
from mmzero_runtime.storage.store import LocalStore


@pytest.mark.parametrize("keep", [1, 2, 3])
@pytest.mark.parametrize("judge", ["previous_solver", "coder_checkpoint"])
def test_no_stage_ever_misses_a_model_it_reads(keep: int, judge: str) -> None:
    spec = RunSpec(
        iterations=4,
        storage={"keep_checkpoints": keep},
        rewards={"coder": {"judge": judge}},
    )
    stages = all_stages(spec)
    removed: set[str] = set()
    for done in range(len(stages) + 1):
        finished = [s.name for s in stages[:done]]
        removed |= set(prunable(spec, finished))
        for stage in stages[done:]:  # every stage still to run finds its inputs
            assert not removed & {key for _, key in stage.inputs}, stage.name
    assert keys.BASE_MODEL not in removed
    for role in keys.ROLES:
        left = [i for i in range(1, 5) if keys.checkpoint_key(role, i) not in removed]
        assert left == list(range(max(1, 5 - keep), 5))  # the newest `keep` of each role


def test_keep_zero_keeps_everything() -> None:
    spec = RunSpec(iterations=3)
    assert prunable(spec, [s.name for s in all_stages(spec)]) == []


def _publish(store: LocalStore, role: keys.Role, iteration: int) -> None:
    output = StageOutput(store, keys.stage_prefix(iteration, f"{role}-grpo"), f"{role}")
    output.put_bytes("model/config.json", f'{{"iteration": {iteration}}}'.encode())
    output.put_bytes("steps.jsonl", b"{}\n")
    output.commit()


def test_prune_removes_old_models_and_export_names_what_is_kept(tmp_path: Path) -> None:
    spec = {"iterations": 3, "storage": {"keep_checkpoints": 1}}
    run = MMZeroRun.model_validate({"metadata": {"name": "kept"}, "spec": spec})
    store = LocalStore(tmp_path / "run")
    for stage in all_stages(run.spec):  # every stage done: only the GRPO ones carry files here
        if stage.kind.endswith("-grpo"):
            _publish(store, stage.role, stage.iteration)  # type: ignore[arg-type]
        else:
            StageOutput(store, stage.output, stage.name).commit()

    removed = prune(run.spec, store)
    assert sorted(removed) == sorted(
        keys.checkpoint_key(role, i) for role in keys.ROLES for i in (1, 2)
    )
    assert prune(run.spec, store) == []  # again: nothing more to do
    old = keys.checkpoint_key("coder", 2)
    assert not store.list(old)
    assert read_manifest(store, "i2/coder-grpo") is not None  # the stage is still done
    assert store.exists("i2/coder-grpo/steps.jsonl")
    assert "keep_checkpoints=1" in (pruned_reason(store, old) or "")
    assert pruned_reason(store, keys.checkpoint_key("coder", 3)) is None

    with pytest.raises(StageError, match=r"iteration 2 was removed .*kept iterations: 3"):
        export_checkpoint(run, store, "coder", 2, tmp_path / "out")
    key, _ = export_checkpoint(run, store, "coder", None, tmp_path / "newest")
    assert key == "i3/coder-grpo/model"
    assert (tmp_path / "newest" / "config.json").read_text() == '{"iteration": 3}'
