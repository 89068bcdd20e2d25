"""`mmzero plan`'s table: each stage with its GPUs, estimated wall time, inputs and outputs, the
memory of its pod groups when the base model's config is on this machine, and the run's total.

It writes line by line through `write` (the CLI passes `print`), so a failure part-way (a
calibration run that cannot be read) leaves what was written before it on the screen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.models.footprint import GIB, ModelShape, model_shape
from mmzero_runtime.models.loading import check_config, resolve_ref
from mmzero_runtime.spec import MMZeroRun
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.planning.estimate import stage_estimates
from mmzero_runtime.stages.planning.walltime import calibrate, roofline, stage_seconds, stage_work

ROOFLINE_SOURCE = "a roofline of H100s (stages/planning/walltime.py)"
"""Where the rates come from without a calibration run, as the total's line names it."""


def base_shape(model: str, write: Callable[[str], None]) -> ModelShape | None:
    """The base model's shape for memory estimates, when its config is on this machine."""
    try:
        return model_shape(check_config(resolve_ref(model)))
    except ModelError as error:
        write(f"(no memory estimates: {error})")
        return None


def plan_summary(
    run: MMZeroRun, calibration: Path | None, write: Callable[[str], None]
) -> str | None:
    """Write the plan of `run`; return why its memory does not fit, or None when it does.
    `calibration` is a run finished on this machine, whose measured rates time the stages."""
    stages = all_stages(run.spec)
    write(f"run {run.metadata.name}: {run.spec.iterations} iteration(s), {len(stages)} stages")
    shape = base_shape(run.spec.model, write)
    calibrated = calibrate(calibration, run.spec) if calibration else None
    limit = run.spec.resources.gpu_memory_gib
    too_big: list[str] = []
    seconds, gpu_seconds, unknown = 0.0, 0.0, 0
    for stage in stages:
        inputs = ", ".join(f"{purpose}={key}" for purpose, key in stage.inputs)
        after = ", ".join(stage.depends_on) or "-"
        gpus = stage.main.gpus
        rates = calibrated or (roofline(run.spec, shape, gpus) if shape and gpus else None)
        estimate = stage_seconds(stage_work(run.spec, stage), rates) if rates else None
        if estimate is None:
            unknown += 1
        else:
            seconds += estimate
            gpu_seconds += estimate * stage.gpus
        took = f"~{estimate / 60:.1f} min" if estimate is not None else "?"
        write(f"{stage.name:<22} gpus={stage.gpus:<3} time={took:<10} after={after}")
        write(f"{'':<22} in: {inputs}")
        write(f"{'':<22} out: {stage.output}/")
        if shape is None:
            continue
        for group_estimate in stage_estimates(run.spec, stage, shape):
            group = group_estimate.group
            if not group_estimate.footprint.parts:
                continue
            per_gpu = group_estimate.per_gpu
            where = f"{per_gpu / GIB:.1f} GiB/GPU" if per_gpu else "CPU"
            name = f"{group.component}:{group.role}"
            write(f"{'':<22} mem {name:<18} {where:<14} {group_estimate.footprint.describe()}")
            if per_gpu and per_gpu > limit * GIB:
                too_big.append(f"{stage.name} {name}: {per_gpu / GIB:.1f} GiB per GPU")
    if unknown == len(stages):
        write("wall time: unknown; the spec asks for no GPUs: pass --calibrate RUN_DIR, a run "
              "finished on this machine, for estimates")  # fmt: skip
    else:
        source = calibrated.source if calibrated else ROOFLINE_SOURCE
        partial = f" ({unknown} stage(s) unknown)" if unknown else ""
        write(f"wall time: ~{seconds / 3600:.2f} h, {gpu_seconds / 3600:.1f} GPU-hours{partial}; "
              f"rates from {source}")  # fmt: skip
    if not too_big:
        return None
    return (
        f"estimated memory exceeds resources.gpu_memory_gib ({limit:g} GiB) for "
        f"{len(too_big)} pod group(s): {'; '.join(too_big)}. Give the group more GPUs "
        "(resources.*.gpus: a trainer shards its state over them), lower micro_batch_size "
        "or the token limits, or turn on gradient_checkpointing"
    )
