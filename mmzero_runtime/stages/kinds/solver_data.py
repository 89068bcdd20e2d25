"""Solver data (reference §2.5 steps 2-5, §6): the new Coder draws each proposal once, the
previous Solver answers both questions 10 times on every render, the majority of its hard
answers becomes the pseudo-label, and only items of Goldilocks difficulty are kept. The
known-answer probes (`stages/kinds/probes.py`) are labelled alongside, in the same requests."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.filters import solver_data_filter
from mmzero_runtime.rewards.grading import Grader, GradeTable
from mmzero_runtime.rewards.labels import SolverCandidate, label_grade_requests, label_items
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import table_bytes
from mmzero_runtime.stages.kinds.coder_data import valid_proposals
from mmzero_runtime.stages.kinds.pipeline import Question, ask, draw, open_generator
from mmzero_runtime.stages.kinds.probes import (
    probe_candidates,
    probe_items,
    probe_questions,
    probe_rows,
    render_probes,
)
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.storage.manifest import StageOutput


def run(ctx: StageContext) -> StageOutput:
    """Write `solver-train.jsonl` (kept items), `candidates.jsonl` (all), `probes.jsonl`
    (the labelled probes) and `images/`."""
    spec = ctx.spec
    proposals = valid_proposals(ctx, keys.PROPOSALS_FOR_SOLVER)
    coder_digest, labeller_digest = ctx.model_digest("coder"), ctx.model_digest("labeller")
    coder = open_generator(
        ctx, ctx.model_dir("coder"), coder_digest, spec.roles.coder.max_prompt_tokens
    )
    images = ctx.workdir / "images"
    probes = probe_items(ctx)
    with ctx.renderer() as renderer:
        probe_images = render_probes(ctx, renderer, probes, ctx.workdir / "probes")
        drawings = draw(
            ctx,
            coder,
            renderer,
            proposals,
            n=1,
            sampling=spec.data.code_sampling,
            tag="draw",
            image_dir=images,
        )
    del coder
    rendered = {pid: ds[0].image for pid, ds in drawings.items() if ds[0].image is not None}
    labeller = open_generator(
        ctx, ctx.model_dir("labeller"), labeller_digest, spec.roles.solver.max_prompt_tokens
    )
    questions = [
        Question(f"{pid}-{kind}", image, question)
        for pid, image in rendered.items()
        for kind, question in (
            ("easy", proposals[pid].easy_question),
            ("hard", proposals[pid].hard_question),
        )
    ]
    questions += probe_questions(probes, probe_images)
    answers = ask(
        ctx,
        labeller,
        questions,
        n=spec.rewards.solver.label_samples,
        sampling=spec.data.solver_service_sampling,
        tag="label",
    )
    candidates = [
        SolverCandidate(
            pid, proposals[pid].easy_answer, answers[f"{pid}-easy"], answers[f"{pid}-hard"]
        )
        for pid in rendered
        if f"{pid}-easy" in answers and f"{pid}-hard" in answers
    ]
    probed = probe_candidates(probes, answers)
    with Grader(spec.grading) as grader:
        graded = grader.grade(label_grade_requests(candidates + probed, spec=spec.filters))
        ctx.ledger.record_grades(graded)
        labels = label_items(candidates + probed, spec=spec.filters, grades=GradeTable(graded))
        probe_table = probe_rows(ctx, probes, probed, labels, grader, labeller_digest)
    ctx.ledger.check(spec.grading.max_failure_share)
    labels = {c.item_id: labels[c.item_id] for c in candidates}
    report = solver_data_filter(labels, spec=spec.filters)
    prometheus.observe_filter("solver_data", len(report.kept), report.counts.items())
    output = ctx.output()
    rows: list[dict[str, Any]] = []
    for c in candidates:
        image = f"{keys.IMAGES_DIR}/{c.item_id}.png"
        output.put_file(image, rendered[c.item_id])
        label = labels[c.item_id]
        rows.append(
            {
                "id": c.item_id,
                "image": image,
                "question": proposals[c.item_id].hard_question,
                "label": label.label,
                "hard_consistency": label.hard_consistency,
                "vote_margin": label.vote_margin,
                "easy_score": label.easy_score,
                "hard_answers": list(c.hard_answers),
                "easy_answers": list(c.easy_answers),
                "proposal": asdict(proposals[c.item_id]),
                "drawn_by": coder_digest,
                "labelled_by": labeller_digest,
                "dropped": report.dropped.get(c.item_id),
            }
        )
    output.put_bytes(keys.CANDIDATES, table_bytes(keys.CANDIDATES, rows))
    output.put_bytes(keys.PROBES, table_bytes(keys.PROBES, probe_table))
    kept = set(report.kept)
    train = [r for r in rows if r["id"] in kept]
    output.put_bytes(keys.SOLVER_TRAIN_SET, table_bytes(keys.SOLVER_TRAIN_SET, train))
    draws = [{"id": pid, "render": ds[0].reason} for pid, ds in drawings.items()]
    output.put_bytes(keys.DRAWS, table_bytes(keys.DRAWS, draws))
    return output
