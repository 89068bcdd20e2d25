"""Proposer GRPO (reference §2.3, §5.3): the Proposer learns from the frozen Coder and Solver.

Each step samples `group_size` proposals per seed topic; the frozen Coder of the previous
iteration draws N SVGs of every parsed proposal; the sandbox renders them; the frozen Solver
answers both questions K times on each render; the reward combines solvability, Goldilocks
difficulty and the batch-level penalties over the whole step batch.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

from mmzero_runtime.generation.base import GenerationRequest, Generator
from mmzero_runtime.rewards import proposer as reward
from mmzero_runtime.rewards.grading import GradeTable
from mmzero_runtime.roles import (
    ParseFailure,
    Proposal,
    build_proposer_messages,
    parse_proposal,
    reward_content_type,
)
from mmzero_runtime.stages.kinds.grpo_loop import (
    StepOutcome,
    mean_reward,
    rollout_sampling,
    run_grpo,
    term_means,
)
from mmzero_runtime.stages.kinds.pipeline import RewardServices, draw, generate, judge_drawings
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.training.batch import Rollout


def seed_prompts(ctx: StageContext) -> list[tuple[str, str]]:
    """(id, topic) rows: every topic `seed_rows_per_topic` times, shuffled per iteration (the
    reference replayed one fixed order every iteration, §13.18)."""
    data = ctx.spec.data
    rows = [
        (f"seed{i}", data.topics[i % len(data.topics)])
        for i in range(len(data.topics) * data.seed_rows_per_topic)
    ]
    random.Random(ctx.seed("shuffle")).shuffle(rows)
    return rows


def _reward_proposal(item_id: str, parsed: Proposal | ParseFailure) -> reward.Proposal:
    if isinstance(parsed, ParseFailure):
        return reward.Proposal(item_id, parsed=False)
    return reward.Proposal(
        item_id,
        True,
        reward_content_type(parsed.content_type, parsed.caption),
        parsed.caption,
        parsed.easy_question,
        parsed.easy_answer,
        parsed.hard_question,
    )


def _samples(
    ctx: StageContext, frozen: RewardServices, step: int, proposals: dict[str, Proposal]
) -> list[reward.CoderSample]:
    """N rendered drawings per proposal, each answered K times on both questions."""
    rspec = ctx.spec.rewards.proposer
    drawings = draw(
        ctx,
        frozen.models["coder"],
        frozen.renderer,
        proposals,
        n=rspec.coder_samples,
        sampling=ctx.spec.data.coder_service_sampling,
        tag=f"coder{step}",
        image_dir=ctx.workdir / "images" / f"step{step}",
    )
    measured = judge_drawings(
        ctx,
        frozen.models["solver"],
        [(d, proposals[pid]) for pid, ds in drawings.items() for d in ds],
        n=rspec.solver_samples,
        tag=f"solver{step}",
    )
    samples = [
        reward.CoderSample(pid, j, d.rendered, measured[d.id])
        for pid, ds in drawings.items()
        for j, d in enumerate(ds)
    ]
    return samples


def _rollout(
    ctx: StageContext,
    frozen: RewardServices,
    step: int,
    batch: list[tuple[str, str]],
    policy: Generator,
) -> StepOutcome:
    spec = ctx.spec.roles.proposer
    sampling = rollout_sampling(spec)
    requests = [
        GenerationRequest(
            f"s{step}-{i}-{row}",
            build_proposer_messages(topic),
            (),
            spec.group_size,
            sampling,
            ctx.seed("rollout", step, i),
        )
        for i, (row, topic) in enumerate(batch)
    ]
    results = generate(ctx, policy, requests)
    responses = {
        f"{rid}-r{k}": (rid, sample)
        for rid, result in results.items()
        for k, sample in enumerate(result.samples)
    }
    parsed = {item_id: parse_proposal(sample.text) for item_id, (_, sample) in responses.items()}
    valid = {i: p for i, p in parsed.items() if isinstance(p, Proposal)}
    samples = _samples(ctx, frozen, step, valid)
    proposals = [_reward_proposal(i, p) for i, p in parsed.items()]
    requests_ = reward.proposer_grade_requests(proposals, samples)
    graded = frozen.grader.grade(requests_)
    ctx.ledger.record_grades(graded)
    rewards = reward.proposer_rewards(
        proposals, samples, spec=ctx.spec.rewards.proposer, grades=GradeTable(graded)
    )
    return _outcome(ctx, step, batch, responses, parsed, samples, rewards)


def _outcome(
    ctx: StageContext,
    step: int,
    batch: list[tuple[str, str]],
    responses: dict[str, tuple[str, Any]],
    parsed: dict[str, Proposal | ParseFailure],
    samples: list[reward.CoderSample],
    rewards: list[reward.ProposerReward],
) -> StepOutcome:
    topics = {f"s{step}-{i}-{row}": topic for i, (row, topic) in enumerate(batch)}
    rollouts, records = [], []
    for r in rewards:
        group, sample = responses[r.item_id]
        record: dict[str, Any] = {
            "step": step,
            "id": r.item_id,
            "group": group,
            "topic": topics[group],
            "reward": r.total,
            "terms": _terms(r),
            "response": sample.text,
        }
        p = parsed[r.item_id]
        record["proposal"] = None if isinstance(p, ParseFailure) else asdict(p)
        record["parse_failure"] = p.reason if isinstance(p, ParseFailure) else None
        records.append(record)
        if r.total is not None:
            rollouts.append(
                Rollout(
                    r.item_id,
                    group,
                    build_proposer_messages(topics[group]),
                    None,
                    sample.token_ids,
                    r.total,
                    sample.logprobs,
                )
            )
    rendered = sum(s.rendered for s in samples)
    figures = {
        "reward/mean": mean_reward([r.total for r in rewards]),
        # no response at all (every request failed): the ledger's check stops the step next
        "proposer/parse_rate": (
            sum(isinstance(p, Proposal) for p in parsed.values()) / len(parsed) if parsed else 0.0
        ),
        "coder/render_rate": rendered / len(samples) if samples else 0.0,
    }
    figures.update(term_means([_terms(r) for r in rewards]))
    return StepOutcome(rollouts, records, figures)


def _terms(r: reward.ProposerReward) -> dict[str, float]:
    return {
        "base": r.base,
        "avg_solvability": r.avg_solvability,
        "avg_difficulty": r.avg_difficulty,
        "easy_hard_penalty": r.easy_hard_penalty,
        "content_type_penalty": r.content_type_penalty,
        "diversity": r.diversity,
        "format": r.format,
        "num_rendered": r.num_rendered,
    }


def run(ctx: StageContext) -> StageOutput | None:
    """Train the Proposer of this iteration."""
    roles = ctx.spec.roles
    limits = {"coder": roles.coder.max_prompt_tokens, "solver": roles.solver.max_prompt_tokens}
    with RewardServices(ctx, limits) as frozen:
        return run_grpo(
            ctx,
            roles.proposer,
            ctx.model_dir("init"),
            seed_prompts(ctx),
            lambda step, batch, policy: _rollout(ctx, frozen, step, batch, policy),
        )
