"""Known-answer probes through the Solver labelling path, with the real grader pool: noise
injected into the votes lowers the measured pseudo-label accuracy and fires the alarm."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mmzero_runtime.alarms import evaluate
from mmzero_runtime.models.procedural import ChartItem
from mmzero_runtime.rewards.grading import Grader, GradeTable
from mmzero_runtime.rewards.labels import label_grade_requests, label_items
from mmzero_runtime.spec import MMZeroRun, RunSpec
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.graph.tables import table_bytes
from mmzero_runtime.stages.health.health import stage_health
from mmzero_runtime.stages.kinds.probes import (
    PROBE_PREFIX,
    probe_candidates,
    probe_items,
    probe_questions,
    probe_rows,
)
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.storage.store import LocalStore

pytestmark = pytest.mark.integration

VOTES = 6


def _context(tmp_path: Path) -> StageContext:
    spec = RunSpec.model_validate({"iterations": 1, "health": {"probe_items": 32},
                                   "rewards": {"solver": {"label_samples": VOTES}}})  # fmt: skip
    stage = next(s for s in all_stages(spec) if s.kind == "solver-data")
    return StageContext(MMZeroRun(spec=spec), LocalStore(tmp_path), stage)


def _votes(items: list[ChartItem], noise: float, seed: int) -> dict[str, tuple[str | None, ...]]:
    """Every vote the truth, except a `noise` share replaced by one of two wrong answers (as a
    Solver that misreads the chart would: its wrong answers agree with each other)."""
    rng = random.Random(seed)
    answers: dict[str, tuple[str | None, ...]] = {}
    for item in items:
        for kind, target in (("easy", item.easy), ("hard", item.hard)):
            wrong = (f"not {target.answer}", f"{target.answer}{target.answer}")
            answers[f"{PROBE_PREFIX}{item.id}-{kind}"] = tuple(
                rng.choice(wrong) if rng.random() < noise else target.answer for _ in range(VOTES)
            )
    return answers


def _accuracy(ctx: StageContext, grader: Grader, noise: float) -> list[dict[str, object]]:
    items = probe_items(ctx)
    candidates = probe_candidates(items, _votes(items, noise, seed=7))
    graded = grader.grade(label_grade_requests(candidates, spec=ctx.spec.filters))
    labels = label_items(candidates, spec=ctx.spec.filters, grades=GradeTable(graded))
    return probe_rows(ctx, items, candidates, labels, grader, "sha256:labeller")


def test_label_noise_lowers_probe_accuracy_and_fires_the_label_alarm(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    items = probe_items(ctx)
    assert len(items) == 32 and len({i.hard.answer for i in items}) == 4  # every bar count
    questions = probe_questions(items, {PROBE_PREFIX + i.id: tmp_path / "x.png" for i in items})
    assert len(questions) == 64  # easy and hard of every probe, as generated items are asked
    accuracy = {}
    with Grader(ctx.spec.grading) as grader:
        for noise in (0.0, 0.4, 0.8):
            rows = _accuracy(ctx, grader, noise)
            assert len(rows) == 32
            read = {keys.PROBES: table_bytes(keys.PROBES, rows), "draws.jsonl": b"",
                    "candidates.jsonl": b""}.__getitem__  # fmt: skip
            figures = stage_health(ctx.spec, ctx.stage, read)["figures"]
            assert figures["probes/label_accuracy"] == sum(r["label_correct"] for r in rows) / 32
            accuracy[noise] = figures
    # noiseless votes: the grader agrees with every known answer (the labels are the truth)
    assert accuracy[0.0]["probes/label_accuracy"] == 1.0
    assert accuracy[0.0]["probes/vote_margin_mean"] == 1.0
    assert (accuracy[0.0]["probes/label_accuracy"] > accuracy[0.4]["probes/label_accuracy"]
            > accuracy[0.8]["probes/label_accuracy"])  # fmt: skip
    assert evaluate(ctx.spec.health, {ctx.name: accuracy[0.0]}) == []
    fired = evaluate(ctx.spec.health, {ctx.name: accuracy[0.8]})
    assert [a.name for a in fired] == ["label_accuracy"]
