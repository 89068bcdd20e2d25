"""GRPOTrainer on the untrained tiny Qwen2-VL: updates, freezing, resume, errors (STYLE 22)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from rollouts import SPEC, make_rollouts

from mmzero_runtime.alarms import evaluate
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.health.health import stage_health
from mmzero_runtime.storage.records import dumps_jsonl
from mmzero_runtime.training.batch import Rollout
from mmzero_runtime.training.errors import CheckpointError, TrainingError
from mmzero_runtime.training.trainer import GRPOTrainer

pytestmark = pytest.mark.integration


def snapshot(trainer: GRPOTrainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def vision_names(trainer: GRPOTrainer) -> set[str]:
    return {n for n, _ in trainer.model.named_parameters() if ".visual." in n}


def test_step_finite_loss_and_every_trainable_parameter_changes(
    tiny_vlm_dir: Path, chart_png: Path
) -> None:
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    before = snapshot(trainer)
    stats = trainer.step(make_rollouts(chart_png, 0))
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
    assert stats["step/updates"] == 2 and trainer.step_count == 1
    assert stats["tokens/response"] == 18 and stats["tokens/sequences"] == 4
    assert stats["grad/norm"] > 0
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
    assert vision_names(trainer)  # the vision tower is among the parameters that moved


def test_step_frozen_vision_tower_stays_fixed(tiny_vlm_dir: Path, chart_png: Path) -> None:
    spec = SPEC.model_copy(update={"freeze_vision_tower": True})
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, spec, TINY_IMAGE, device="cpu")
    before = snapshot(trainer)
    trainer.step(make_rollouts(chart_png, 0))
    vision = vision_names(trainer)
    for name, parameter in trainer.model.named_parameters():
        assert torch.equal(parameter, before[name]) == (name in vision), name


def test_step_zero_variance_group_dropped_is_counted_and_excluded(
    tiny_vlm_dir: Path, chart_png: Path
) -> None:
    spec = SPEC.model_copy(update={"zero_variance_groups": "drop"})
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, spec, TINY_IMAGE, device="cpu")
    rollouts = make_rollouts(chart_png, 0)
    flat = [*rollouts[:2], *(dataclasses.replace(r, reward=0.5) for r in rollouts[2:])]
    stats = trainer.step(flat)
    assert stats["groups/zero_variance"] == 1 and stats["groups/zero_variance_share"] == 0.5
    assert stats["tokens/sequences"] == 2 and stats["tokens/response"] == 8  # the image group
    assert stats["step/updates"] == 1  # the text group's update had nothing left


def test_constant_rewards_show_up_as_zero_variance_groups_and_fire_the_alarm(
    tiny_vlm_dir: Path, chart_png: Path
) -> None:
    """Issue 7: a reward that never varies is seen in the stage's health, not only in a flat
    curve: every group counts as zero-variance and the all-same alarm fires."""
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    steps = []
    for step in (1, 2):
        constant = [dataclasses.replace(r, reward=0.25) for r in make_rollouts(chart_png, step)]
        stats = trainer.step(constant)
        steps.append({"kind": "step", "step": step, "reward/mean": 0.25, **stats})
    spec = RunSpec(iterations=1)
    stage = next(s for s in all_stages(spec) if s.kind == "solver-grpo")
    figures = stage_health(spec, stage, {"steps.jsonl": dumps_jsonl(steps)}.__getitem__)["figures"]
    assert figures["groups/zero_variance_share"] == 1.0
    assert [a.name for a in evaluate(spec.health, {stage.name: figures})] == ["all_same_groups"]


@pytest.mark.slow
def test_save_then_resume_next_step_is_bit_exact(
    tiny_vlm_dir: Path, chart_png: Path, tmp_path: Path
) -> None:
    first, second = make_rollouts(chart_png, 1), make_rollouts(chart_png, 2)
    straight = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    straight.step(first)
    expected = straight.step(second)

    killed = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    killed.step(first)
    killed.save(tmp_path / "ckpt")
    draw = torch.rand(3)
    del killed

    resumed = GRPOTrainer.resume(tmp_path / "ckpt", SPEC, TINY_IMAGE, device="cpu")
    assert torch.equal(torch.rand(3), draw)  # RNG states restored
    assert resumed.step_count == 1 and len(resumed.history) == 1
    got = resumed.step(second)
    for name, parameter in straight.model.named_parameters():
        assert torch.equal(parameter, dict(resumed.model.named_parameters())[name]), name
    for key, value in expected.items():
        if not key.startswith(("time/", "throughput/")):
            assert got[key] == value, key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no partial left behind


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        # the state file is written last: without it the checkpoint is incomplete
        pytest.param(lambda d: (d / "trainer_state.json").unlink(), "incomplete", id="no-state"),
        pytest.param(
            lambda d: (d / "trainer_state.json").write_text("{"), "unreadable", id="bad-json"
        ),
        pytest.param(lambda d: truncate(d / "model.safetensors"), "cannot load", id="weights"),
        pytest.param(lambda d: truncate(d / "optimizer.pt"), "corrupt", id="optimizer"),
        pytest.param(lambda d: shutil.rmtree(d), "no such checkpoint", id="missing-dir"),
    ],
)
def test_resume_corrupt_checkpoint_raises_clear_error(
    tiny_vlm_dir: Path,
    chart_png: Path,
    tmp_path: Path,
    damage: Callable[[Path], None],
    message: str,
) -> None:
    spec = SPEC.model_copy(update={"rollout_batch_size": 1, "global_batch_size": 1})
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, spec, TINY_IMAGE, device="cpu")
    trainer.save(tmp_path / "ckpt")
    damage(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=message) as error:
        GRPOTrainer.resume(tmp_path / "ckpt", spec, TINY_IMAGE, device="cpu")
    assert str(tmp_path / "ckpt") in str(error.value)


def test_resume_with_another_reference_model_raises(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    trainer.save(tmp_path / "ckpt")
    other = tmp_path / "other"
    shutil.copytree(tiny_vlm_dir, other)
    with torch.no_grad():
        next(trainer.model.parameters()).add_(1.0)
    trainer.model.save_pretrained(other)
    with pytest.raises(CheckpointError, match="not the one this checkpoint"):
        GRPOTrainer.resume(tmp_path / "ckpt", SPEC, TINY_IMAGE, reference=other, device="cpu")


def test_request_stop_ends_step_after_current_update(tiny_vlm_dir: Path, chart_png: Path) -> None:
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    engine_step = trainer.engine.step

    def step_then_signal() -> float:
        norm = engine_step()
        trainer.request_stop()  # as a SIGTERM handler would, during the first update
        return norm

    trainer.engine.step = step_then_signal  # type: ignore[method-assign]
    stats = trainer.step(make_rollouts(chart_png, 0))
    assert stats["step/updates"] == 1 and stats["step/interrupted"] == 1
    assert trainer.step_count == 1 and trainer.stop_requested  # the shortened step counts


@pytest.mark.parametrize(
    ("response", "message"),
    [
        pytest.param([], "empty response", id="empty"),
        pytest.param(
            [12, None, 13], "vision placeholder", id="image-pad-token"
        ),  # None: <|image_pad|>
    ],
)
def test_step_bad_response_raises(
    tiny_vlm_dir: Path, chart_png: Path, response: list[int | None], message: str
) -> None:
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, SPEC, TINY_IMAGE, device="cpu")
    image_token = trainer.model.config.image_token_id
    response = [image_token if token is None else token for token in response]
    rollouts = make_rollouts(chart_png, 0)
    rollouts[1] = Rollout("bad", "0-s", rollouts[1].messages, chart_png, response, 0.0)
    with pytest.raises(TrainingError, match=message):
        trainer.step(rollouts)


def test_step_prompt_over_limit_raises(tiny_vlm_dir: Path, chart_png: Path) -> None:
    # the Solver prompt, image tokens included, is longer than 16 (the smallest allowed limit)
    spec = SPEC.model_copy(update={"max_prompt_tokens": 16})
    trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, spec, TINY_IMAGE, device="cpu")
    with pytest.raises(TrainingError, match="exceeds max_prompt_tokens 16"):
        trainer.step(make_rollouts(chart_png, 0))


@pytest.mark.slow
def test_step_micro_batch_size_does_not_change_the_gradient(
    tiny_vlm_dir: Path, chart_png: Path
) -> None:
    results = []
    for micro in (1, 2):
        spec = SPEC.model_copy(update={"micro_batch_size": micro})
        trainer = GRPOTrainer.from_pretrained(tiny_vlm_dir, spec, TINY_IMAGE, device="cpu")
        grads: list[list[torch.Tensor]] = []

        def record_then_step(
            engine_step: Callable[[], float] = trainer.engine.step,
            parameters: list[torch.nn.Parameter] = trainer.engine.parameters,
            grads: list[list[torch.Tensor]] = grads,
        ) -> float:
            grads.append([p.grad.clone() for p in parameters if p.grad is not None])
            return engine_step()

        trainer.engine.step = record_then_step  # type: ignore[method-assign]
        stats = trainer.step(make_rollouts(chart_png, 3))
        results.append((stats, grads))
    (one, grads_one), (two, grads_two) = results
    assert one["loss/total"] == pytest.approx(two["loss/total"], rel=1e-5)
    assert one["grad/norm"] == pytest.approx(two["grad/norm"], rel=1e-4)
    for update_one, update_two in zip(grads_one, grads_two, strict=True):
        for a, b in zip(update_one, update_two, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
