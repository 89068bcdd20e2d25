"""Wall time of each stage and the run's GPU-hours, for `mmzero plan`.

A stage's time is modelled as a fixed overhead (loading models, rendering) plus the tokens it
samples over a decode rate plus the tokens it trains on over a training rate. The token counts
come from the spec alone: every sample the stage draws (rollouts, frozen-role answers,
labelling votes, evaluation answers), each `fill` of its response limit long, and every rollout
trained on. The rates and fills come from one of:

* **a finished run on the same hardware** (`mmzero plan --calibrate RUN_DIR`): sampled tokens
  per second of sampling (`metrics/<stage>.prom`), trained tokens per second of update
  (`metrics/<stage>.steps.jsonl`), each role's mean response length over its limit and mean
  trained tokens per sequence (`steps.jsonl`), and the median per-stage overhead;
* **a roofline of the GPUs** otherwise: decoding reads every weight once per step of a batch of
  `GENERATION_BATCH` sequences at `HBM_BYTES_PER_SECOND`; training costs 12 x parameters
  FLOPs per token (forward, backward and a recomputed forward under gradient checkpointing:
  8; the rollout's and the KL reference's log-probs: 4) at `MFU` of `PEAK_FLOPS`; responses fill
  their whole limit (an upper bound). The constants are an H100's; on CPU nothing is assumed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmzero_runtime.models.footprint import ModelShape
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.keys import ROLES, STEPS, Role
from mmzero_runtime.stages.graph.plan import Stage, all_stages
from mmzero_runtime.stages.kinds.pipeline import GENERATION_BATCH
from mmzero_runtime.stages.process import measurements

PEAK_FLOPS = 989e12
"""Dense bf16 FLOP/s of one H100 SXM."""
HBM_BYTES_PER_SECOND = 3.35e12
"""Memory bandwidth of one H100 SXM."""
MFU = 0.3
"""Share of the peak a GRPO update reaches (assumed: short sequences, ZeRO-3 gathers)."""
GPU_OVERHEAD_SECONDS = 120.0
"""Per stage on GPUs: pulling and loading the checkpoints, starting the pods (assumed)."""
PROMPT_TOKENS = 512
"""Assumed prompt tokens of a trained sequence without calibration (capped by the spec)."""


@dataclass(frozen=True)
class Work:
    """What one stage computes: response-token limits sampled, by the role whose model
    samples them, and sequences trained (by its trained role)."""

    sampled: dict[Role, int] = field(default_factory=dict)
    """Sum of the response limits of every sample, by role."""
    trained: int = 0
    """Sequences the stage's trainer updates on."""
    trained_role: Role | None = None


@dataclass(frozen=True)
class Rates:
    """How fast this hardware goes, and how long responses are relative to their limits."""

    decode_tokens_per_second: float | None
    """Sampled tokens per second of one generating pod (None: unknown)."""
    train_tokens_per_second: float | None
    """Trained tokens per second of one trainer pod."""
    overhead_seconds: float
    fill: dict[Role, float] = field(default_factory=dict)
    """Mean response length over its limit, by role (1: every response at its limit)."""
    sequence_tokens: dict[Role, float] = field(default_factory=dict)
    """Mean prompt + response tokens of a trained sequence, by role."""
    source: str = ""


def _add(sampled: dict[Role, int], role: Role, samples: float, limit: int) -> None:
    sampled[role] = sampled.get(role, 0) + int(samples * limit)


def stage_work(spec: RunSpec, stage: Stage) -> Work:
    """The stage's samples and trained sequences, from the spec (frozen roles' answers counted
    as if every drawing rendered: an upper bound)."""
    data, rewards, roles = spec.data, spec.rewards, spec.roles
    coder_service = data.coder_service_sampling.max_tokens
    answer = data.solver_service_sampling.max_tokens
    sampled: dict[Role, int] = {}
    trained = 0
    match stage.kind:
        case "proposer-grpo":
            grpo = roles.proposer
            proposals = grpo.steps * grpo.rollout_batch_size * grpo.group_size
            _add(sampled, "proposer", proposals, grpo.max_response_tokens)
            drawings = proposals * rewards.proposer.coder_samples
            _add(sampled, "coder", drawings, coder_service)
            _add(sampled, "solver", drawings * 2 * rewards.proposer.solver_samples, answer)
            trained = proposals
        case "propose":
            count = data.proposals_for_coder + data.proposals_for_solver
            _add(sampled, "proposer", count, data.propose_sampling.max_tokens)
        case "coder-data":
            drawings = data.proposals_for_coder * spec.filters.coder_render_samples
            _add(sampled, "coder", drawings, data.code_sampling.max_tokens)
        case "coder-grpo":
            grpo = roles.coder
            drawings = grpo.steps * grpo.rollout_batch_size * grpo.group_size
            _add(sampled, "coder", drawings, grpo.max_response_tokens)
            _add(sampled, "solver", drawings * 2 * rewards.coder.solver_samples, answer)
            trained = drawings
        case "solver-data":
            _add(sampled, "coder", data.proposals_for_solver, data.code_sampling.max_tokens)
            items = data.proposals_for_solver + spec.health.probe_items
            _add(sampled, "solver", items * 2 * rewards.solver.label_samples, answer)
        case "solver-grpo":
            grpo = roles.solver
            trained = grpo.steps * grpo.rollout_batch_size * grpo.group_size
            _add(sampled, "solver", trained, grpo.max_response_tokens)
        case "evaluate":
            questions = 2 * spec.evaluation.held_out_items  # plus the benchmark rows, unknown here
            _add(sampled, "solver", 2 * questions, spec.evaluation.sampling.max_tokens)
    return Work(sampled, trained, stage.role if trained else None)


def roofline(spec: RunSpec, shape: ModelShape, gpus: int) -> Rates:
    """Rates of a stage whose main pod (its trainer, or its generation pod) has `gpus` H100s,
    tensor or ZeRO parallel over them."""
    weight_bytes = 2 * shape.parameters
    decode = GENERATION_BATCH * HBM_BYTES_PER_SECOND * gpus / weight_bytes
    train = MFU * PEAK_FLOPS * gpus / (12 * shape.parameters)
    sequence = {
        role: float(min(getattr(spec.roles, role).max_prompt_tokens, PROMPT_TOKENS)
                    + getattr(spec.roles, role).max_response_tokens)
        for role in ROLES
    }  # fmt: skip
    return Rates(decode, train, GPU_OVERHEAD_SECONDS, {r: 1.0 for r in ROLES}, sequence,
                 f"roofline of {gpus} H100(s) at {MFU:.0%} MFU")  # fmt: skip


def _prom_sums(text: str, names: Iterable[str]) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(names)
    sums = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                sums[sample.name] += sample.value
    return sums


def calibrate(run_dir: Path, spec: RunSpec) -> Rates:
    """Rates measured by the finished stages of the local run in `run_dir` (run with `spec`)."""
    from mmzero_runtime.stages.graph.tables import load_table

    tokens = seconds = trained = update_seconds = 0.0
    fill: dict[Role, float] = {}
    sequence: dict[Role, float] = {}
    stages = [s for s in all_stages(spec) if measurements.read_summary(run_dir, s.name)]
    if not stages:
        raise StageError(
            f"{run_dir}: no finished stage with metrics/ to calibrate from; give the directory "
            "of a local run (`mmzero run` writes <run>/metrics/)"
        )
    for stage in stages:
        prom = run_dir / measurements.METRICS_DIR / f"{stage.name}.prom"
        if prom.exists():
            sums = _prom_sums(prom.read_text(), ("mmzero_generated_tokens_total",
                                                 "mmzero_generation_seconds_total"))  # fmt: skip
            tokens += sums["mmzero_generated_tokens_total"]
            seconds += sums["mmzero_generation_seconds_total"]
        if not stage.kind.endswith("-grpo") or stage.role is None:
            continue
        steps_file = run_dir / stage.output / STEPS
        steps = load_table(steps_file.read_bytes(), str(steps_file))
        rows = [r for r in steps if "skipped" not in r]
        if not rows:
            continue
        limit = getattr(spec.roles, stage.role).max_response_tokens
        fill[stage.role] = statistics.mean(r["response_length/mean"] for r in rows) / limit
        sequence[stage.role] = sum(r["tokens/total"] for r in rows) / sum(
            r["tokens/sequences"] for r in rows
        )
        trained += sum(r["tokens/total"] for r in rows)
        update_seconds += sum(r.get("time/step_seconds", 0.0)
                              for r in measurements.read_steps(run_dir, stage.name))  # fmt: skip
    rates = Rates(tokens / seconds if seconds else None,
                  trained / update_seconds if update_seconds else None, 0.0, fill, sequence,
                  f"measured in {run_dir}")  # fmt: skip
    overheads = []
    for stage in stages:
        summary = measurements.read_summary(run_dir, stage.name)
        modelled = stage_seconds(stage_work(spec, stage), rates)
        if summary is not None and modelled is not None:
            overheads.append(max(0.0, summary["seconds"] - modelled))
    return Rates(rates.decode_tokens_per_second, rates.train_tokens_per_second,
                 statistics.median(overheads) if overheads else 0.0, fill, sequence,
                 rates.source)  # fmt: skip


def stage_seconds(work: Work, rates: Rates) -> float | None:
    """Estimated wall time of a stage (None when a rate it needs is unknown)."""
    total = rates.overhead_seconds
    if work.sampled:
        if rates.decode_tokens_per_second is None:
            return None
        tokens = sum(n * rates.fill.get(role, 1.0) for role, n in work.sampled.items())
        total += tokens / rates.decode_tokens_per_second
    if work.trained and work.trained_role is not None:
        if rates.train_tokens_per_second is None or work.trained_role not in rates.sequence_tokens:
            return None
        tokens = work.trained * rates.sequence_tokens[work.trained_role]
        total += tokens / rates.train_tokens_per_second
    return total


def measured_seconds(run_dir: Path, spec: RunSpec) -> dict[str, float]:
    """Measured wall time of each finished stage of a local run."""
    found = {}
    for stage in all_stages(spec):
        summary = measurements.read_summary(run_dir, stage.name)
        if summary is not None:
            found[stage.name] = float(summary["seconds"])
    return found
