"""The stage graph: order, chaining of checkpoints, and what is runnable given what is done."""

from __future__ import annotations

import pytest

from mmzero_runtime.spec import CoderRewardSpec, RewardsSpec, RunSpec
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import STAGE_KINDS, Stage, all_stages, is_finished, plan


def _inputs(stage: Stage) -> dict[str, str]:
    return dict(stage.inputs)


def _by_name(spec: RunSpec) -> dict[str, Stage]:
    return {s.name: s for s in all_stages(spec)}


def test_plan_of_new_run_starts_with_proposer_grpo() -> None:
    assert [s.name for s in plan(RunSpec(iterations=2), [])] == ["i1-proposer-grpo"]


def test_plan_walked_one_stage_at_a_time_visits_every_stage_in_iteration_order() -> None:
    spec = RunSpec(iterations=2)
    done: list[str] = []
    while nxt := plan(spec, done):
        assert set(nxt[0].depends_on) <= set(done)
        done.append(nxt[0].name)
    expected = [f"i{i}-{kind}" for i in (1, 2) for kind in STAGE_KINDS]
    assert done == expected
    assert is_finished(spec, done)
    assert not is_finished(spec, done[:-1])


def test_plan_offers_stages_that_can_run_in_parallel() -> None:
    spec = RunSpec(iterations=2)
    done = [f"i1-{kind}" for kind in STAGE_KINDS if kind != "evaluate"]
    # evaluation of iteration 1 does not hold back iteration 2
    assert [s.name for s in plan(spec, done)] == ["i1-evaluate", "i2-proposer-grpo"]


def test_plan_never_returns_a_done_stage() -> None:
    spec = RunSpec(iterations=1)
    every = [s.name for s in all_stages(spec)]
    assert plan(spec, every) == []


def test_first_iteration_starts_every_role_from_the_base_model() -> None:
    stages = _by_name(RunSpec(iterations=1))
    assert _inputs(stages["i1-proposer-grpo"]) == {
        "init": keys.BASE_MODEL,
        "coder": keys.BASE_MODEL,
        "solver": keys.BASE_MODEL,
    }
    assert _inputs(stages["i1-coder-grpo"])["init"] == keys.BASE_MODEL
    assert _inputs(stages["i1-solver-grpo"])["init"] == keys.BASE_MODEL


def test_later_iterations_chain_checkpoints_as_the_reference() -> None:
    stages = _by_name(RunSpec(iterations=2))
    # reference §2.1: Proposer v2 from Proposer v1, rewarded by frozen Coder v1 and Solver v1
    assert _inputs(stages["i2-proposer-grpo"]) == {
        "init": "i1/proposer-grpo/model",
        "coder": "i1/coder-grpo/model",
        "solver": "i1/solver-grpo/model",
    }
    # Coder v2 trains on Proposer v2's proposals, filtered by renders of Coder v1
    assert _inputs(stages["i2-coder-data"]) == {
        "proposals": "i2/propose/proposals-coder.jsonl",
        "coder": "i1/coder-grpo/model",
    }
    # Solver data: drawn by the new Coder v2, labelled by the previous Solver v1
    solver_data = _inputs(stages["i2-solver-data"])
    assert solver_data["coder"] == "i2/coder-grpo/model"
    assert solver_data["labeller"] == "i1/solver-grpo/model"
    assert _inputs(stages["i2-solver-grpo"])["init"] == "i1/solver-grpo/model"


@pytest.mark.parametrize(
    ("judge", "expected"),
    [
        ("previous_solver", "i1/solver-grpo/model"),  # the method, the default
        ("coder_checkpoint", "i1/coder-grpo/model"),  # the reference code's defect §13.11
    ],
)
def test_coder_judge_follows_the_spec_option(judge: str, expected: str) -> None:
    spec = RunSpec(iterations=2, rewards=RewardsSpec(coder=CoderRewardSpec(judge=judge)))  # type: ignore[arg-type]
    coder = _by_name(spec)["i2-coder-grpo"]
    assert _inputs(coder)["judge"] == expected
    (server,) = coder.servers
    assert (server.purpose, server.models) == ("judge", (expected,))


def test_every_input_comes_from_a_direct_dependency_or_the_base_model() -> None:
    stages = _by_name(RunSpec(iterations=3))
    for stage in stages.values():
        for purpose, key in stage.inputs:
            producers = [stages[d].output for d in stage.depends_on]
            assert key == keys.BASE_MODEL or any(key.startswith(p + "/") for p in producers), (
                f"{stage.name} input {purpose}={key} is not produced by {stage.depends_on}"
            )


def test_stage_names_and_outputs_are_deterministic_and_unique() -> None:
    first = all_stages(RunSpec(iterations=3))
    second = all_stages(RunSpec(iterations=3))
    assert first == second
    assert len({s.name for s in first}) == len(first)
    assert len({s.output for s in first}) == len(first)
    assert all(s.manifest == f"{s.output}/MANIFEST.json" for s in first)


def test_default_resources_match_the_reference_eight_gpu_layout() -> None:
    stages = _by_name(RunSpec(iterations=1))
    # §8.1: Proposer phase 3 train + 2 Coder + 3 Solver servers; Coder phase 4 + 4; Solver 8
    assert stages["i1-proposer-grpo"].gpus == 8
    assert stages["i1-coder-grpo"].gpus == 8
    assert stages["i1-solver-grpo"].gpus == 8


def test_checkpoint_key_rejects_negative_iteration() -> None:
    with pytest.raises(ValueError, match="iterations count from 1"):
        keys.stage_prefix(0, "propose")
