"""Solver GRPO (reference §2.5 step 7, §5.5): 0.9 x accuracy against the pseudo-label +
0.1 x format. Labels are the offline majority of the previous Solver (the reference code) or,
with `rewards.solver.labels: online_majority`, each group's own majority (TTRL)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from mmzero_runtime.generation.base import GenerationRequest, Generator
from mmzero_runtime.rewards import solver as reward
from mmzero_runtime.rewards.grading import Grader, GradeTable
from mmzero_runtime.roles import build_solver_messages, check_format, extract_boxed
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import read_table
from mmzero_runtime.stages.kinds.grpo_loop import (
    StepOutcome,
    mean_reward,
    rollout_sampling,
    run_grpo,
)
from mmzero_runtime.stages.kinds.pipeline import generate
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.provenance import check_producer
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.training.batch import Rollout


def train_set(ctx: StageContext) -> list[dict[str, Any]]:
    """The kept Solver items, shuffled per iteration, checked against the planned checkpoints."""
    rows = read_table(ctx.store, ctx.input_key("train_set"))
    i = ctx.stage.iteration
    check_producer(ctx, rows, "drawn_by", keys.checkpoint_key("coder", i), keys.SOLVER_TRAIN_SET)
    check_producer(
        ctx, rows, "labelled_by", keys.checkpoint_key("solver", i - 1), keys.SOLVER_TRAIN_SET
    )
    random.Random(ctx.seed("shuffle")).shuffle(rows)
    return rows


def _labels(
    ctx: StageContext,
    grader: Grader,
    items: dict[str, dict[str, Any]],
    responses: list[reward.SolverResponse],
) -> dict[str, str | None]:
    if ctx.spec.rewards.solver.labels == "offline_majority":
        return {gid: item["label"] for gid, item in items.items()}
    graded = grader.grade(reward.group_label_grade_requests(responses))
    ctx.ledger.record_grades(graded)
    return reward.group_labels(responses, grades=GradeTable(graded))


def _rollout(
    ctx: StageContext, grader: Grader, step: int, batch: list[dict[str, Any]], policy: Generator
) -> StepOutcome:
    spec = ctx.spec.roles.solver
    sampling = rollout_sampling(spec)
    items = {f"s{step}-{i}-{row['id']}": row for i, row in enumerate(batch)}
    images = {gid: ctx.input_path("train_set", row["image"]) for gid, row in items.items()}
    requests = [
        GenerationRequest(
            gid,
            build_solver_messages(row["question"]),
            (images[gid],),
            spec.group_size,
            sampling,
            ctx.seed("rollout", step, gid),
        )
        for gid, row in items.items()
    ]
    results = generate(ctx, policy, requests)
    samples = {
        f"{gid}-r{k}": (gid, s)
        for gid, result in results.items()
        for k, s in enumerate(result.samples)
    }
    rule = ctx.spec.rewards.solver.format_check
    responses = [
        reward.SolverResponse(gid, extract_boxed(s.text), check_format(s.text, rule))
        for gid, s in samples.values()
    ]
    labels = _labels(ctx, grader, items, responses)
    graded = grader.grade(reward.solver_grade_requests(responses, labels))
    ctx.ledger.record_grades(graded)
    rewards = reward.solver_rewards(
        responses, labels=labels, spec=ctx.spec.rewards.solver, grades=GradeTable(graded)
    )
    return _outcome(step, items, images, samples, rewards, labels)


def _outcome(
    step: int,
    items: dict[str, dict[str, Any]],
    images: dict[str, Path],
    samples: dict[str, tuple[str, Any]],
    rewards: list[reward.SolverReward],
    labels: dict[str, str | None],
) -> StepOutcome:
    rollouts, records = [], []
    for (rid, (gid, s)), r in zip(samples.items(), rewards, strict=True):
        records.append(
            {
                "step": step,
                "id": rid,
                "group": gid,
                "item": items[gid]["id"],
                "label": labels.get(gid),
                "reward": r.total,
                "terms": {"accuracy": r.accuracy, "format": r.format},
                "response": s.text,
            }
        )
        if r.total is not None:
            messages = build_solver_messages(items[gid]["question"])
            rollouts.append(
                Rollout(rid, gid, messages, images[gid], s.token_ids, r.total, s.logprobs)
            )
    accuracy = [r.accuracy for r in rewards if r.accuracy is not None]
    figures = {
        "reward/mean": mean_reward([r.total for r in rewards]),
        "solver/accuracy": sum(accuracy) / len(accuracy) if accuracy else 0.0,
        "solver/format_rate": sum(r.format for r in rewards) / max(len(rewards), 1),
    }
    return StepOutcome(rollouts, records, figures)


def run(ctx: StageContext) -> StageOutput | None:
    """Train the Solver of this iteration."""
    with Grader(ctx.spec.grading) as grader:
        return run_grpo(
            ctx,
            ctx.spec.roles.solver,
            ctx.model_dir("init"),
            train_set(ctx),
            lambda step, batch, policy: _rollout(ctx, grader, step, batch, policy),
        )
