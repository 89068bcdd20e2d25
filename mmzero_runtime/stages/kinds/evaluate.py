"""Evaluation: the new Solver and the base model answer held-out known-answer questions and the
user's benchmark files.

The held-out items come from the procedural generator at indices no warm-start ever saw
(`HELD_OUT_OFFSET`), so their answers are true by construction; the benchmark files
(`evaluation.benchmarks`, `stages/kinds/benchmarks.py`) are the user's. Both models get the same
prompts, images and seeds, and are graded by the training grader, so the baseline row is
measured in the same run under the same rules (user-asks §6.9). Every raw prediction is saved;
the same checkpoint and spec give byte-identical result files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.generation.base import GenerationRequest
from mmzero_runtime.models.procedural import HELD_OUT_OFFSET, generate_items
from mmzero_runtime.rewards.grading import Grader
from mmzero_runtime.roles import build_solver_messages, check_format, extract_boxed
from mmzero_runtime.spec import JudgeSpec, user_path
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import table_bytes
from mmzero_runtime.stages.kinds.benchmarks import (
    Benchmark,
    BenchmarkItem,
    describe,
    grade_benchmark,
    judge_requests,
    load_benchmark,
    verdict,
)
from mmzero_runtime.stages.kinds.pipeline import generate, open_generator
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.storage.manifest import StageOutput

MODELS = ("solver", "baseline")
"""Input purposes evaluated: this iteration's Solver and the base model."""
HELD_OUT = "held_out"
"""The name of the procedural held-out set among the evaluated sets."""
SELECTION_RULE = (
    "last: this iteration's final Solver checkpoint. best (in the report): the iteration whose "
    "Solver scored highest on the held-out known-answer items, the earlier one on a tie; the "
    "benchmark files never select a checkpoint"
)


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


def _held_out(ctx: StageContext, output: StageOutput) -> tuple[list[BenchmarkItem], dict[str, Any]]:
    """The procedural held-out questions (easy and hard of each item), and per question id its
    item, kind and skill."""
    spec = ctx.spec
    items = generate_items(spec.evaluation.held_out_items, seed=spec.seed, offset=HELD_OUT_OFFSET)
    images = ctx.workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    with ctx.renderer() as renderer:
        rendered = {r.id: r for r in renderer.render_many([(i.id, i.svg) for i in items])}
        prometheus.observe_renders(r.reason for r in rendered.values())
    questions, about = [], {}
    for item in items:
        png = rendered[item.id].png
        if png is None:  # procedural charts always render; a failure here is a sandbox fault
            ctx.ledger.record("render", item.id, rendered[item.id].reason, rendered[item.id].detail)
            continue
        (images / f"{item.id}.png").write_bytes(png)
        output.put_file(f"{keys.IMAGES_DIR}/{item.id}.png", images / f"{item.id}.png")
        for kind, target in (("easy", item.easy), ("hard", item.hard)):
            qid = f"{item.id}-{kind}"
            questions.append(BenchmarkItem(qid, target.question, target.answer, png))
            about[qid] = {"item": item.id, "question_kind": kind, "skill": target.skill}
    ctx.ledger.check(spec.grading.max_failure_share)
    return questions, about


def _benchmarks(ctx: StageContext) -> list[Benchmark]:
    def resolve(path: str) -> Path:
        if path.startswith("store:"):
            return ctx.store.path(path.removeprefix("store:"))
        return user_path(path)

    return [load_benchmark(b, resolve) for b in ctx.spec.evaluation.benchmarks]


def _answers(
    ctx: StageContext, purpose: str, sets: dict[str, list[BenchmarkItem]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """One response of model `purpose` per question of every set, by (set, question id)."""
    digest = ctx.model_digest(purpose)
    generator = open_generator(
        ctx, ctx.model_dir(purpose), digest, ctx.spec.roles.solver.max_prompt_tokens
    )
    files = ctx.workdir / "eval-images"
    files.mkdir(parents=True, exist_ok=True)
    requests, keyed = [], {}
    for name, items in sets.items():
        for item in items:
            image = files / f"{item.image_sha256}.img"
            if not image.exists():
                image.write_bytes(item.image)
            request_id = f"{name}/{item.id}"
            keyed[request_id] = (name, item.id)
            seed = ctx.seed("eval", item.id) if name == HELD_OUT else ctx.seed("bench", request_id)
            messages = build_solver_messages(item.question)
            sampling = ctx.spec.evaluation.sampling
            requests.append(GenerationRequest(request_id, messages, (image,), 1, sampling, seed))
    results = generate(ctx, generator, requests)
    answers = {}
    for request_id, key in keyed.items():
        result = results[request_id]
        text = result.samples[0].text if result.ok else ""
        answers[key] = {
            "model": purpose,
            "producer": digest,
            "response": text,
            "answer": extract_boxed(text),
            "formatted": check_format(text, ctx.spec.rewards.solver.format_check),
            "failure": result.failure,
        }
    return answers


def _score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(r["outcome"] == "correct" for r in rows)
    low, high = wilson(correct, len(rows))
    return {
        "accuracy": correct / len(rows) if rows else 0.0,
        "interval95": [low, high],
        "format_rate": sum(r["formatted"] for r in rows) / len(rows) if rows else 0.0,
        "questions": len(rows),
    }


def run(ctx: StageContext) -> StageOutput:
    """Write `results.jsonl` (every held-out answer, graded), `benchmarks/<name>/
    predictions.jsonl` (every benchmark answer, graded), `summary.json` and `images/`."""
    output = ctx.output()
    benchmarks = _benchmarks(ctx)  # a missing or changed file stops before any model loads
    held_out, about = _held_out(ctx, output)
    sets = {HELD_OUT: held_out, **{b.name: b.items for b in benchmarks}}
    answers: dict[tuple[str, str, str], dict[str, Any]] = {}
    for purpose in MODELS:
        for key, answer in _answers(ctx, purpose, sets).items():
            answers[(purpose, *key)] = answer
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
    with Grader(ctx.spec.grading) as grader:
        for name, items in sets.items():
            for purpose in MODELS:
                mine = [answers[(purpose, name, item.id)] for item in items]
                outcomes, graded = grade_benchmark(grader, items, [a["answer"] for a in mine])
                ctx.ledger.record_grades(graded)
                for item, answer, outcome in zip(items, mine, outcomes, strict=True):
                    rows[name].append(_row(name, item, answer, outcome, about))
    ctx.ledger.check(ctx.spec.grading.max_failure_share)
    if ctx.spec.evaluation.judge is not None:
        for benchmark in benchmarks:
            apply_judge(ctx, benchmark.items, rows[benchmark.name])
    output.put_bytes(keys.EVAL_RESULTS, table_bytes(keys.EVAL_RESULTS, rows[HELD_OUT]))
    for benchmark in benchmarks:
        table = f"benchmarks/{benchmark.name}/{keys.PREDICTIONS}"
        output.put_bytes(table, table_bytes(table, rows[benchmark.name]))
    summary = _summary(rows, benchmarks, ctx.spec.evaluation.judge)
    output.put_bytes("summary.json", json.dumps(summary, indent=1, sort_keys=True).encode())
    return output


def apply_judge(ctx: StageContext, items: list[BenchmarkItem], rows: list[dict[str, Any]]) -> None:
    """Ask the judge about the free-form answers the grader marked wrong; a `yes` makes the
    row correct. Every row records the grader's outcome and the verdict (`yes`, `no`,
    `unclear`, `failed`: no answer; null: not asked)."""
    from mmzero_runtime.generation.http import HTTPGenerator

    judge = ctx.spec.evaluation.judge
    assert judge is not None
    client = HTTPGenerator(judge.url, model_digest=judge.model,
                           token=os.environ.get(judge.token_env))  # fmt: skip
    by_id = {item.id: item for item in items}
    for purpose in MODELS:
        mine = [r for r in rows if r["model"] == purpose]
        questions = [by_id[r["item"]] for r in mine]
        answers, outcomes = [r["answer"] for r in mine], [r["outcome"] for r in mine]
        requests = judge_requests(questions, answers, outcomes, ctx.seed("judge", purpose))
        replies = generate(ctx, client, requests)
        for row in mine:
            reply = replies.get(f"judge/{row['item']}")
            said = None  # not asked
            if reply is not None:
                said = verdict(reply.samples[0].text) if reply.ok else "failed"
            row.update(grader_outcome=row["outcome"], judge_verdict=said)
            if said == "yes":
                row["outcome"] = "correct"


def _row(
    name: str, item: BenchmarkItem, answer: dict[str, Any], outcome: str, about: dict[str, Any]
) -> dict[str, Any]:
    row = {"id": f"{answer['model']}-{item.id}", "question": item.question, "truth": item.answer,
           **answer, "outcome": outcome}  # fmt: skip
    if name == HELD_OUT:
        return {**row, **about[item.id]}
    return {**row, "benchmark": name, "item": item.id, "choices": list(item.choices),
            "image_sha256": item.image_sha256}  # fmt: skip


def _summary(
    rows: dict[str, list[dict[str, Any]]], benchmarks: list[Benchmark], judge: JudgeSpec | None
) -> dict[str, Any]:
    summary: dict[str, Any] = {"selection": SELECTION_RULE}
    for purpose in MODELS:
        mine = [r for r in rows[HELD_OUT] if r["model"] == purpose]
        by_skill = {}
        for skill in sorted({r["skill"] for r in mine}):
            sub = [r for r in mine if r["skill"] == skill]
            by_skill[skill] = sum(r["outcome"] == "correct" for r in sub) / len(sub)
        summary[purpose] = {**_score(mine), "accuracy_by_skill": by_skill}
    summary["benchmarks"] = {
        b.name: {
            **describe(b),
            **{p: _score([r for r in rows[b.name] if r["model"] == p]) for p in MODELS},
        }
        for b in benchmarks
    }
    if judge is not None:
        applies = "free-form benchmark answers the grader marked wrong"
        summary["judge"] = {"url": judge.url, "model": judge.model, "version": judge.version,
                            "applies_to": applies}  # fmt: skip
    return summary
