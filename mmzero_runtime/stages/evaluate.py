"""Evaluation: the new Solver and the base model answer held-out known-answer questions.

The items come from the procedural generator at indices no warm-start ever saw
(`HELD_OUT_OFFSET`), so their answers are true by construction. Both models get the same
prompts, images and seeds, and are graded by the training grader, so the baseline row is
measured in the same run under the same rules (user-asks §6.9).
"""

from __future__ import annotations

import json
import math
from typing import Any

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.generation.base import GenerationRequest
from mmzero_runtime.models.procedural import HELD_OUT_OFFSET, generate_items
from mmzero_runtime.render import open_renderer
from mmzero_runtime.rewards.grading import Grader, GradeRequest
from mmzero_runtime.roles import build_solver_messages, check_format, extract_boxed
from mmzero_runtime.stages import keys
from mmzero_runtime.stages.context import StageContext
from mmzero_runtime.stages.pipeline import generate, open_generator
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.records import dumps_jsonl

MODELS = ("solver", "baseline")
"""Input purposes evaluated: this iteration's Solver and the base model."""


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a share.

    >>> [round(x, 3) for x in wilson(8, 10)]
    [0.49, 0.943]
    """
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (centre - half, centre + half)


def run(ctx: StageContext) -> StageOutput:
    """Write `results.jsonl` (every answer, graded), `summary.json` and `images/`."""
    spec = ctx.spec
    items = generate_items(spec.evaluation.held_out_items, seed=spec.seed, offset=HELD_OUT_OFFSET)
    output = ctx.output()
    images = ctx.workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    with open_renderer(spec.render, spec.image, str(ctx.workdir / "render")) as renderer:
        rendered = {r.id: r for r in renderer.render_many([(i.id, i.svg) for i in items])}
        prometheus.observe_renders(r.reason for r in rendered.values())
    questions = {}
    for item in items:
        png = rendered[item.id].png
        if png is None:  # procedural charts always render; a failure here is a sandbox fault
            ctx.ledger.record("render", item.id, rendered[item.id].reason, rendered[item.id].detail)
            continue
        (images / f"{item.id}.png").write_bytes(png)
        output.put_file(f"{keys.IMAGES_DIR}/{item.id}.png", images / f"{item.id}.png")
        for kind, target in (("easy", item.easy), ("hard", item.hard)):
            questions[f"{item.id}-{kind}"] = (item, kind, target)
    ctx.ledger.check(spec.grading.max_failure_share)
    rows = []
    for purpose in MODELS:
        rows.extend(_answers(ctx, purpose, questions, images))
    with Grader(spec.grading) as grader:
        graded = grader.grade([GradeRequest(r["id"], r["answer"] or "", r["truth"]) for r in rows])
    ctx.ledger.record_grades(graded)
    for row, result in zip(rows, graded, strict=True):
        row["outcome"] = result.outcome
    output.put_bytes(keys.EVAL_RESULTS, dumps_jsonl(rows))
    output.put_bytes("summary.json", json.dumps(_summary(rows), indent=1, sort_keys=True).encode())
    return output


def _answers(
    ctx: StageContext, purpose: str, questions: dict[str, Any], images: Any
) -> list[dict[str, Any]]:
    digest = ctx.model_digest(purpose)
    generator = open_generator(
        ctx, ctx.model_dir(purpose), digest, ctx.spec.roles.solver.max_prompt_tokens
    )
    requests = [
        GenerationRequest(
            qid,
            build_solver_messages(target.question),
            (images / f"{item.id}.png",),
            1,
            ctx.spec.evaluation.sampling,
            ctx.seed("eval", qid),
        )
        for qid, (item, _, target) in questions.items()
    ]
    results = generate(ctx, generator, requests)
    rows = []
    for qid, (item, kind, target) in questions.items():
        result = results[qid]
        text = result.samples[0].text if result.ok else ""
        rows.append(
            {
                "id": f"{purpose}-{qid}",
                "model": purpose,
                "producer": digest,
                "item": item.id,
                "question_kind": kind,
                "skill": target.skill,
                "question": target.question,
                "truth": target.answer,
                "response": text,
                "answer": extract_boxed(text),
                "formatted": check_format(text),
                "failure": result.failure,
            }
        )
    return rows


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"selection": "every iteration's final Solver checkpoint"}
    for purpose in MODELS:
        mine = [r for r in rows if r["model"] == purpose]
        correct = sum(r["outcome"] == "correct" for r in mine)
        low, high = wilson(correct, len(mine))
        by_skill = {}
        for skill in sorted({r["skill"] for r in mine}):
            sub = [r for r in mine if r["skill"] == skill]
            by_skill[skill] = sum(r["outcome"] == "correct" for r in sub) / len(sub)
        summary[purpose] = {
            "accuracy": correct / len(mine) if mine else 0.0,
            "interval95": [low, high],
            "format_rate": sum(r["formatted"] for r in mine) / len(mine) if mine else 0.0,
            "questions": len(mine),
            "accuracy_by_skill": by_skill,
        }
    return summary
