"""The loop every GRPO stage shares: resume, roll out, reward, update, checkpoint, publish.

A role's stage supplies only `rollout(step, prompts, policy) -> StepOutcome` (how its responses
are sampled and rewarded). This loop owns the rest: resuming from the scratch checkpoint a
killed run left, one checkpoint and one record file per step (records first, so a kill between
the two redoes the step with the same seeds and the same result), SIGTERM (finish the current
update, checkpoint, exit), TensorBoard scalars, the progress bar, and the final publication of
the model and the records under the stage's prefix with the manifest last.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.generation.base import Generator
from mmzero_runtime.spec import GRPOSpec, SamplingSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import table_bytes
from mmzero_runtime.stages.process import measurements
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.progress import progress_bar
from mmzero_runtime.stages.process.ranks import SharedPolicy, leading
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.records import dumps_jsonl, parse_jsonl
from mmzero_runtime.training.batch import Rollout

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKPOINT_DIR = "checkpoint"
STEPS_DIR = "steps"
TRAINED_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
"""Besides `*.safetensors`, the files of a trainer checkpoint that the published model takes."""
EXIT_PREEMPTED = 143
"""Exit status after a SIGTERM checkpoint: 128 + SIGTERM, as a killed process reports."""


class Preempted(StageError):
    """The stage checkpointed after SIGTERM and stopped; rerunning it resumes."""


@dataclass
class StepOutcome:
    """What one step's rollouts produced."""

    rollouts: list[Rollout]
    records: list[dict[str, Any]]
    """One row per response: ids, reward terms, the parsed output (the report reads these)."""
    figures: dict[str, float] = field(default_factory=dict)
    """Step-level figures shown on the progress bar and logged: e.g. `reward/mean`."""


RolloutFn = Callable[[int, list[T], Generator], StepOutcome]


def rollout_sampling(spec: GRPOSpec) -> SamplingSpec:
    """How a role's GRPO rollouts are sampled."""
    return SamplingSpec(
        temperature=spec.temperature, top_p=spec.top_p, max_tokens=spec.max_response_tokens
    )


def mean_reward(totals: Sequence[float | None]) -> float:
    """Mean of the rewards that could be measured (0 when none could).

    >>> mean_reward([1.0, None, 0.0])
    0.5
    """
    measured = [t for t in totals if t is not None]
    return sum(measured) / len(measured) if measured else 0.0


def term_means(terms: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """`terms/<name>`: the mean of each reward term over the responses that have it.

    >>> term_means([{"a": 1.0, "b": None}, {"a": 0.0, "b": True}])
    {'terms/a': 0.5, 'terms/b': 1.0}
    """
    values: dict[str, list[float]] = {}
    for row in terms:
        for name, value in row.items():
            if isinstance(value, int | float):
                values.setdefault(name, []).append(float(value))
    return {f"terms/{name}": sum(v) / len(v) for name, v in sorted(values.items())}


def whole_groups(rollouts: Sequence[Rollout]) -> tuple[list[Rollout], int]:
    """The rollouts of groups left with at least 2 rewarded responses, and how many were not.

    GRPO normalises a reward within its group; a response whose siblings all lost their reward
    (a failed Solver call or grading gives None) has no baseline, so it is left out of the step
    rather than failing it.
    """
    sizes = Counter(r.group_id for r in rollouts)
    kept = [r for r in rollouts if sizes[r.group_id] >= 2]
    return kept, len(rollouts) - len(kept)


def step_prompts(prompts: Sequence[T], step: int, batch: int) -> list[T]:
    """The `batch` prompts of `step` (from 1), walking the (pre-shuffled) list cyclically.

    >>> step_prompts("abcde", 2, 3)
    ['d', 'e', 'a']
    """
    if not prompts:
        raise StageError("no training prompts")
    start = (step - 1) * batch
    return [prompts[(start + i) % len(prompts)] for i in range(batch)]


def _policy_generator(ctx: StageContext, trainer: Any, spec: GRPOSpec, step: int) -> Generator:
    from mmzero_runtime.generation.hf import HFGenerator
    from mmzero_runtime.stages.kinds.pipeline import GENERATION_BATCH

    return HFGenerator(
        trainer.model,
        trainer.processor,
        image_spec=ctx.spec.image,
        max_prompt_tokens=spec.max_prompt_tokens,
        batch_size=GENERATION_BATCH,
        model_digest=f"policy:{ctx.name}:step{step - 1}",
    )


def _open_trainer(ctx: StageContext, spec: GRPOSpec, init: Path) -> Any:
    from mmzero_runtime.training.trainer import GRPOTrainer

    checkpoint = ctx.workdir / CHECKPOINT_DIR
    if checkpoint.is_dir():
        trainer = GRPOTrainer.resume(
            checkpoint, spec, ctx.spec.image, reference=init, device=ctx.device
        )
        log.info("resuming stage=%s step=%d", ctx.name, trainer.step_count)
        return trainer
    return GRPOTrainer.from_pretrained(init, spec, ctx.spec.image, device=ctx.device)


TIMING_PREFIXES = ("time/", "throughput/", "memory/")
"""Step figures that vary from run to run: logged and sent to TensorBoard, never part of an
artifact, so the same seed and spec give the same bytes."""


def _write_step(
    ctx: StageContext, step: int, outcome: StepOutcome, stats: dict[str, float]
) -> None:
    steady = {k: v for k, v in stats.items() if not k.startswith(TIMING_PREFIXES)}
    rows = [*outcome.records, {"kind": "step", "step": step, **outcome.figures, **steady}]
    path = ctx.workdir / STEPS_DIR / f"step-{step:04d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(dumps_jsonl(rows))
    tmp.replace(path)


class _Preemption:
    """SIGTERM handling: during an update, finish it and checkpoint; otherwise stop at once
    (nothing since the last checkpoint is kept, and every write is atomic)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer, self.updating = trainer, False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.updating:
            self.trainer.request_stop()
            return
        raise Preempted("SIGTERM before the update; the last checkpoint is kept")

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


def run_grpo(
    ctx: StageContext, spec: GRPOSpec, init: Path, prompts: Sequence[T], rollout: RolloutFn[T]
) -> StageOutput | None:
    """Train for `spec.steps` steps from `init` (or the scratch checkpoint); the returned
    output holds the model and the records, ready for the runner to commit. With several
    ranks (`stages/process/ranks.py`) only the leader rolls out, writes and returns an output; the
    others return None after the last step."""
    from mmzero_runtime.stages.process.tensorboard import ScalarWriter

    if not prompts:
        return _publish_unchanged(ctx, init) if ctx.ranks.leader else None
    trainer = _open_trainer(ctx, spec, init)
    shared = (
        None
        if ctx.ranks.world == 1
        else SharedPolicy(
            ctx.ranks, _policy_generator(ctx, trainer, spec, 0),
            trainer.engine.generation_weights, ctx.workdir / "ranks" / str(ctx.ranks.rank),
        )
    )  # fmt: skip
    if not ctx.ranks.leader:
        assert shared is not None
        _follow(ctx, spec, trainer, shared)
        return None
    preemption = _Preemption(trainer)
    writer = ScalarWriter(ctx.store.root / "tensorboard" / ctx.name)
    bar = progress_bar(ctx, total=spec.steps, initial=trainer.step_count, unit="step")
    try:
        for step in range(trainer.step_count + 1, spec.steps + 1):
            policy: Generator = _policy_generator(ctx, trainer, spec, step)
            if shared is not None:
                shared.policy = policy
                policy = shared
            started = time.monotonic()
            batch = step_prompts(prompts, step, spec.rollout_batch_size)
            with leading(shared):
                outcome = rollout(step, batch, policy)
                ctx.ledger.check(ctx.spec.grading.max_failure_share)
                outcome.rollouts, lone = whole_groups(outcome.rollouts)
                outcome.figures["rollouts/lone_dropped"] = float(lone)
                if not outcome.rollouts:
                    raise StageError(f"stage {ctx.name} step {step}: no response could be rewarded")
            rollout_seconds = time.monotonic() - started
            if shared is not None:
                shared.share_rollouts(outcome.rollouts)
            preemption.updating = True
            stats = trainer.step(outcome.rollouts)
            stats["time/rollout_seconds"] = rollout_seconds
            stats["memory/rss_bytes"] = float(measurements.rss_bytes())
            stats["memory/peak_rss_bytes"] = float(measurements.peak_rss_bytes())
            _write_step(ctx, step, outcome, stats)
            volatile = {k: v for k, v in stats.items() if k.startswith(TIMING_PREFIXES)}
            measurements.append_step(ctx.store.root, ctx.name, step, volatile)
            step_seconds = rollout_seconds + stats.get("time/step_seconds", 0.0)
            prometheus.observe_step({**outcome.figures, **stats}, step_seconds)
            trainer.save(ctx.workdir / CHECKPOINT_DIR)
            preemption.updating = False
            writer.add(step, {**outcome.figures, **stats})
            bar.update(1)
            bar.set_postfix({k: round(v, 3) for k, v in outcome.figures.items()}, refresh=True)
            if trainer.stop_requested:
                if shared is not None:
                    shared.abort(f"SIGTERM, checkpointed after step {step}")
                raise Preempted(f"stage {ctx.name}: SIGTERM, checkpointed after step {step}")
    finally:
        bar.close()
        writer.close()
        preemption.restore()
    return _publish(ctx, spec, init)


def _follow(ctx: StageContext, spec: GRPOSpec, trainer: Any, shared: SharedPolicy) -> None:
    """A follower's steps: sample for the leader, then train on the rollouts it shares and
    join each checkpoint. A SIGTERM reaches every process of the pod: the leader's checkpoint
    decides, so a follower only stops with it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for step in range(trainer.step_count + 1, spec.steps + 1):
        shared.policy = _policy_generator(ctx, trainer, spec, step)
        rollouts = shared.follow()
        trainer.step(rollouts)
        trainer.save(ctx.workdir / CHECKPOINT_DIR)
        log.debug("rank=%d step=%d done", ctx.ranks.rank, step)


def _publish_unchanged(ctx: StageContext, init: Path) -> StageOutput:
    """No training data: the role keeps its weights this iteration, and the records say why
    (an iteration whose data stage kept nothing must not stop the whole run)."""
    log.warning("stage=%s has no training data; publishing its initial checkpoint", ctx.name)
    output = ctx.output()
    output.put_tree("model", init)
    output.put_bytes(keys.REWARDS, b"")
    skipped = {"kind": "step", "step": 0, "skipped": "the data stage kept no training items"}
    output.put_bytes(keys.STEPS, table_bytes(keys.STEPS, [skipped]))
    return output


def _trained(name: str) -> bool:
    """Files of a checkpoint that training changes: weights and model config."""
    return name.endswith(".safetensors") or name in TRAINED_FILES


def _publish(ctx: StageContext, spec: GRPOSpec, init: Path) -> StageOutput:
    checkpoint = ctx.workdir / CHECKPOINT_DIR
    output = ctx.output()
    # Weights and config come from training; tokenizer and processor files, which training
    # never changes, from the initial model, since a save/load round trip rewrites them.
    for path in sorted(p for p in checkpoint.iterdir() if p.is_file() and _trained(p.name)):
        output.put_file(f"model/{path.name}", path)
    for path in sorted(p for p in init.iterdir() if p.is_file() and not _trained(p.name)):
        output.put_file(f"model/{path.name}", path)
    rewards: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for step in range(1, spec.steps + 1):
        path = ctx.workdir / STEPS_DIR / f"step-{step:04d}.jsonl"
        for row in parse_jsonl(path.read_bytes(), str(path)):
            (steps if row.get("kind") == "step" else rewards).append(row)
    output.put_bytes(keys.REWARDS, table_bytes(keys.REWARDS, rewards))
    output.put_bytes(keys.STEPS, table_bytes(keys.STEPS, steps))
    return output
