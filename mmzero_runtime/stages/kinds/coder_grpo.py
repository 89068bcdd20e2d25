"""Coder GRPO (reference §2.4, §5.4): the Coder learns to draw proposals that render and that
the judge answers as proposed. The judge is the previous Solver by default; the reference
code's Coder checkpoint is the `coder_checkpoint` option (§13.11)."""

from __future__ import annotations

import random
from typing import Any

from mmzero_runtime.generation.base import Generator
from mmzero_runtime.rewards import coder as reward
from mmzero_runtime.rewards.grading import GradeTable
from mmzero_runtime.roles import Proposal, build_coder_messages
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import read_table
from mmzero_runtime.stages.kinds.grpo_loop import (
    StepOutcome,
    mean_reward,
    rollout_sampling,
    run_grpo,
    term_means,
)
from mmzero_runtime.stages.kinds.pipeline import (
    RewardServices,
    coder_requests,
    generate,
    judge_drawings,
    render_drawings,
)
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.provenance import check_producer
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.training.batch import Rollout


def train_set(ctx: StageContext) -> list[tuple[str, Proposal]]:
    """The filtered proposals, shuffled per iteration, checked to come from this Proposer."""
    rows = read_table(ctx.store, ctx.input_key("train_set"))
    proposer = keys.checkpoint_key("proposer", ctx.stage.iteration)
    check_producer(ctx, rows, "producer", proposer, keys.CODER_TRAIN_SET)
    items = [(row["id"], Proposal(**row["proposal"])) for row in rows]
    random.Random(ctx.seed("shuffle")).shuffle(items)
    return items


def _rollout(
    ctx: StageContext,
    judge: RewardServices,
    step: int,
    batch: list[tuple[str, Proposal]],
    policy: Generator,
) -> StepOutcome:
    spec, rspec = ctx.spec.roles.coder, ctx.spec.rewards.coder
    sampling = rollout_sampling(spec)
    proposals = {f"s{step}-{i}-{pid}": p for i, (pid, p) in enumerate(batch)}
    results = generate(
        ctx, policy, coder_requests(ctx, proposals, spec.group_size, sampling, f"rollout{step}")
    )
    samples = {
        f"{gid}-r{k}": (gid, s)
        for gid, result in results.items()
        for k, s in enumerate(result.samples)
    }
    drawings = render_drawings(
        ctx,
        judge.renderer,
        {i: s.text for i, (_, s) in samples.items()},
        ctx.workdir / "images" / f"step{step}",
    )
    measured = judge_drawings(
        ctx,
        judge.models["judge"],
        [(d, proposals[samples[i][0]]) for i, d in drawings.items()],
        n=rspec.solver_samples,
        tag=f"judge{step}",
    )
    responses = [
        reward.CoderResponse(
            i,
            not d.extraction.syntax_error,
            d.extraction.svg_ok,
            d.rendered,
            proposals[samples[i][0]].easy_answer,
            measured[i],
        )
        for i, d in drawings.items()
    ]
    graded = judge.grader.grade(reward.coder_grade_requests(responses))
    ctx.ledger.record_grades(graded)
    rewards = reward.coder_rewards(responses, spec=rspec, grades=GradeTable(graded))
    rollouts, records = [], []
    for r in rewards:
        gid, s = samples[r.item_id]
        records.append(
            {
                "step": step,
                "id": r.item_id,
                "group": gid,
                "reward": r.total,
                "render": drawings[r.item_id].reason,
                "terms": _terms(r),
                "response": s.text,
            }
        )
        if r.total is not None:
            rollouts.append(
                Rollout(
                    r.item_id,
                    gid,
                    build_coder_messages(proposals[gid]),
                    None,
                    s.token_ids,
                    r.total,
                    s.logprobs,
                )
            )
    figures = {
        "reward/mean": mean_reward([r.total for r in rewards]),
        "coder/render_rate": sum(d.rendered for d in drawings.values()) / len(drawings),
    }
    figures.update(term_means([_terms(r) for r in rewards]))
    return StepOutcome(rollouts, records, figures)


def _terms(r: reward.CoderReward) -> dict[str, Any]:
    return {
        "renderability": r.renderability,
        "solvability": r.solvability,
        "difficulty": r.difficulty,
        "type_compliant": r.type_compliant,
        "penalty": r.penalty,
    }


def run(ctx: StageContext) -> StageOutput | None:
    """Train the Coder of this iteration."""
    limits = {"judge": ctx.spec.roles.solver.max_prompt_tokens}  # it answers Solver prompts
    with RewardServices(ctx, limits) as judge:
        return run_grpo(
            ctx,
            ctx.spec.roles.coder,
            ctx.model_dir("init"),
            train_set(ctx),
            lambda step, batch, policy: _rollout(ctx, judge, step, batch, policy),
        )
