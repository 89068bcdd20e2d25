"""Wall-time estimates of `mmzero plan`: token counts from the spec, rates from a measured run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzero_runtime.models.footprint import ModelShape
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.plan import Stage, all_stages
from mmzero_runtime.stages.planning.walltime import (
    Rates,
    calibrate,
    roofline,
    stage_seconds,
    stage_work,
)
from mmzero_runtime.stages.process import measurements
from mmzero_runtime.storage.records import dumps_jsonl

SPEC = RunSpec.model_validate({
    "iterations": 1,
    "roles": {"solver": {"steps": 2, "rollout_batch_size": 3, "global_batch_size": 3,
                         "group_size": 4, "max_response_tokens": 100}},
    "data": {"proposals_for_solver": 10, "solver_service_sampling": {"max_tokens": 50},
             "code_sampling": {"max_tokens": 300}},
    "rewards": {"solver": {"label_samples": 5}},
    "health": {"probe_items": 6},
})  # fmt: skip


def _stage(kind: str) -> Stage:
    return next(s for s in all_stages(SPEC) if s.kind == kind)


def test_work_counts_every_sample_and_trained_sequence_of_a_stage() -> None:
    labelling = stage_work(SPEC, _stage("solver-data"))
    # 10 drawings of up to 300 tokens; (10 items + 6 probes) x 2 questions x 5 votes x 50
    assert labelling.sampled == {"coder": 3000, "solver": 8000}
    assert labelling.trained == 0
    training = stage_work(SPEC, _stage("solver-grpo"))
    assert training.sampled == {"solver": 2 * 3 * 4 * 100}
    assert (training.trained, training.trained_role) == (24, "solver")


def test_seconds_are_overhead_plus_decode_plus_training() -> None:
    rates = Rates(100.0, 1000.0, 5.0, {"solver": 0.5}, {"solver": 250.0})
    work = stage_work(SPEC, _stage("solver-grpo"))
    assert stage_seconds(work, rates) == pytest.approx(5 + 2400 * 0.5 / 100 + 24 * 250 / 1000)
    assert stage_seconds(work, Rates(None, None, 0.0)) is None


def test_roofline_rates_scale_with_gpus_and_shrink_with_the_model() -> None:
    small = ModelShape(10**9, 0, 24, 2048, 8192, 8, 128, 32000)
    big = ModelShape(8 * 10**9, 0, 32, 4096, 14336, 8, 128, 152000)
    one, eight = roofline(SPEC, small, 1), roofline(SPEC, small, 8)
    assert eight.decode_tokens_per_second == pytest.approx(8 * one.decode_tokens_per_second)
    assert roofline(SPEC, big, 1).train_tokens_per_second == pytest.approx(
        one.train_tokens_per_second / 8
    )


def test_calibration_reads_rates_fill_and_overhead_from_a_finished_run(tmp_path: Path) -> None:
    stage = _stage("solver-grpo")
    steps = [{"kind": "step", "step": s, "response_length/mean": 50.0, "tokens/total": 3000.0,
              "tokens/sequences": 12.0} for s in (1, 2)]  # fmt: skip
    (tmp_path / stage.output).mkdir(parents=True)
    (tmp_path / stage.output / "steps.jsonl").write_bytes(dumps_jsonl(steps))
    for step in (1, 2):
        measurements.append_step(tmp_path, stage.name, step, {"time/step_seconds": 3.0})
    measurements.write_exposition(tmp_path, stage.name, b"mmzero_generated_tokens_total 1200.0\n"
                             b"mmzero_generation_seconds_total 12.0\n")  # fmt: skip
    measurements.write_summary(tmp_path, stage.name, {"seconds": 40.0})
    rates = calibrate(tmp_path, SPEC)
    assert rates.decode_tokens_per_second == 100.0
    assert rates.train_tokens_per_second == 1000.0  # 6000 tokens in 6 s of updates
    assert rates.fill == {"solver": 0.5} and rates.sequence_tokens == {"solver": 250.0}
    # the model says 2400 x 0.5 / 100 + 24 x 250 / 1000 = 18 s; the stage took 40 s
    assert rates.overhead_seconds == pytest.approx(22.0)
    assert stage_seconds(stage_work(SPEC, stage), rates) == pytest.approx(40.0)


def test_calibrating_from_a_directory_without_finished_stages_says_so(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no finished stage"):
        calibrate(tmp_path, SPEC)
