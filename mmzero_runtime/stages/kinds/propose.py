"""Propose (reference §2.4 step 2, §2.5 step 1): the new Proposer writes the proposals that the
Coder data and Solver data stages draw, one sample per seed topic row, cycling the topics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mmzero_runtime.generation.base import GenerationRequest
from mmzero_runtime.roles import Proposal, build_proposer_messages, parse_proposal
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import table_bytes
from mmzero_runtime.stages.kinds.pipeline import generate, open_generator
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.progress import follow, progress_bar
from mmzero_runtime.storage.manifest import StageOutput


def proposal_record(item_id: str, topic: str, producer: str, text: str) -> dict[str, Any]:
    """A proposal row: the raw response, the parsed proposal or why it did not parse."""
    parsed = parse_proposal(text)
    record: dict[str, Any] = {"id": item_id, "topic": topic, "producer": producer, "response": text}
    if isinstance(parsed, Proposal):
        return {**record, "proposal": asdict(parsed), "parse_failure": None}
    return {**record, "proposal": None, "parse_failure": parsed.reason}


def run(ctx: StageContext) -> StageOutput:
    """Write `proposals-coder.jsonl` and `proposals-solver.jsonl`."""
    data, spec = ctx.spec.data, ctx.spec.roles.proposer
    digest = ctx.model_digest("proposer")
    generator = open_generator(ctx, ctx.model_dir("proposer"), digest, spec.max_prompt_tokens)
    output = ctx.output()
    for name, split, count in (
        (keys.PROPOSALS_FOR_CODER, "coder", data.proposals_for_coder),
        (keys.PROPOSALS_FOR_SOLVER, "solver", data.proposals_for_solver),
    ):
        topics = {
            f"{split}{i}": data.topics[i % len(data.topics)] for i in ctx.shard.items(range(count))
        }
        requests = [
            GenerationRequest(
                i, build_proposer_messages(t), (), 1, data.propose_sampling, ctx.seed(split, i)
            )
            for i, t in topics.items()
        ]
        bar = progress_bar(ctx, total=len(topics), unit="proposal")
        results = generate(ctx, generator, requests, on_progress=follow(bar))
        bar.close()
        rows = [
            proposal_record(i, topics[i], digest, result.samples[0].text)
            for i, result in results.items()
            if result.ok
        ]
        output.put_bytes(name, table_bytes(name, rows))
    ctx.ledger.check(ctx.spec.grading.max_failure_share)
    return output
