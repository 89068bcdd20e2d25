"""Coder data (reference §2.4 step 3, §6): keep the proposals the current Coder draws with a
render rate in [0.25, 0.75] over 4 samples, i.e. hard enough to teach and not impossible."""

from __future__ import annotations

from dataclasses import asdict

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.filters import coder_data_filter
from mmzero_runtime.roles import Proposal
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import read_table, table_bytes
from mmzero_runtime.stages.kinds.pipeline import draw, open_generator
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.stages.process.provenance import check_producer
from mmzero_runtime.storage.manifest import StageOutput


def valid_proposals(ctx: StageContext, name: str) -> dict[str, Proposal]:
    """Parsed proposals of this iteration's propose stage, checked to come from its Proposer
    (a shard's block of them)."""
    rows = read_table(ctx.store, ctx.input_key("proposals"))
    proposer = keys.checkpoint_key("proposer", ctx.stage.iteration)
    check_producer(ctx, rows, "producer", proposer, name)
    valid = [(row["id"], Proposal(**row["proposal"])) for row in rows if row["proposal"]]
    return dict(ctx.shard.items(valid))


def run(ctx: StageContext) -> StageOutput:
    """Write `coder-train.jsonl` (kept proposals) and `renders.jsonl` (every proposal's draws)."""
    proposals = valid_proposals(ctx, keys.PROPOSALS_FOR_CODER)
    filters = ctx.spec.filters
    coder = open_generator(
        ctx,
        ctx.model_dir("coder"),
        ctx.model_digest("coder"),
        ctx.spec.roles.coder.max_prompt_tokens,
    )
    with ctx.renderer() as renderer:
        drawings = draw(
            ctx,
            coder,
            renderer,
            proposals,
            n=filters.coder_render_samples,
            sampling=ctx.spec.data.code_sampling,
            tag="filter",
            image_dir=ctx.workdir / "images",
        )
    ctx.ledger.check(ctx.spec.grading.max_failure_share)
    renders = {pid: [d.rendered for d in ds] for pid, ds in drawings.items()}
    report = coder_data_filter(renders, spec=filters)
    prometheus.observe_filter("coder_data", len(report.kept), report.counts.items())
    output = ctx.output()
    render_rows = [
        {"id": pid, "reasons": [d.reason for d in ds], "dropped": report.dropped.get(pid)}
        for pid, ds in drawings.items()
    ]
    output.put_bytes(keys.RENDERS, table_bytes(keys.RENDERS, render_rows))
    producer = ctx.digest_of(keys.checkpoint_key("proposer", ctx.stage.iteration))
    kept = [
        {"id": pid, "producer": producer, "proposal": asdict(proposals[pid])} for pid in report.kept
    ]
    output.put_bytes(keys.CODER_TRAIN_SET, table_bytes(keys.CODER_TRAIN_SET, kept))
    return output
