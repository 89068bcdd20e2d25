"""Known-answer probes: charts whose answers are true by construction, labelled by the Solver-data
stage exactly as it labels generated items, to measure how often its pseudo-labels are right.

Majority-vote labels are only as good as the Solver that votes (user-asks §3.1): a label right a
third of the time trains the Solver on noise, and nothing in the generated data shows it. The
probes are procedural items (the warm-start generator, at `PROBE_OFFSET`, never trained on); the
same set every iteration, so their accuracy is comparable from one iteration to the next. They
go through the same render, `ask`, vote and filter path as the generated items, and their rows
say whether the filter would have kept them, so the accuracy of the labels that would train is
measured too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmzero_runtime.filters import solver_data_filter
from mmzero_runtime.models.procedural import ChartItem, generate_items
from mmzero_runtime.render import BatchRenderer
from mmzero_runtime.rewards.grading import Grader, GradeRequest, GradeTable
from mmzero_runtime.rewards.labels import ItemLabel, SolverCandidate
from mmzero_runtime.stages.kinds.pipeline import Question
from mmzero_runtime.stages.process.context import StageContext

PROBE_OFFSET = 2_000_000
"""First procedural index of the probes: apart from warm-start data (below 1,000,000) and the
evaluation's held-out items (from 1,000,000)."""
PROBE_PREFIX = "probe-"


def probe_items(ctx: StageContext) -> list[ChartItem]:
    """This run's probe items (`spec.health.probe_items` of them; a shard's block of them)."""
    items = generate_items(ctx.spec.health.probe_items, seed=ctx.spec.seed, offset=PROBE_OFFSET)
    return ctx.shard.items(items)


def render_probes(
    ctx: StageContext, renderer: BatchRenderer, items: list[ChartItem], image_dir: Path
) -> dict[str, Path]:
    """PNG path per probe id; a probe that does not render is a sandbox fault (the generator's
    charts always render), counted in the ledger."""
    image_dir.mkdir(parents=True, exist_ok=True)
    rendered: dict[str, Path] = {}
    for result in renderer.render_many([(PROBE_PREFIX + i.id, i.svg) for i in items]):
        if result.png is None:
            ctx.ledger.record("render", result.id, result.reason, result.detail)
            continue
        path = image_dir / f"{result.id}.png"
        path.write_bytes(result.png)
        rendered[result.id] = path
    return rendered


def probe_questions(items: list[ChartItem], rendered: Mapping[str, Path]) -> list[Question]:
    """The easy and the hard question of every rendered probe, asked like a generated item's."""
    return [
        Question(f"{pid}-{kind}", rendered[pid], target.question)
        for item in items
        for pid in [PROBE_PREFIX + item.id]
        if pid in rendered
        for kind, target in (("easy", item.easy), ("hard", item.hard))
    ]


def probe_candidates(
    items: list[ChartItem], answers: Mapping[str, tuple[str | None, ...]]
) -> list[SolverCandidate]:
    """Probes whose two questions were answered, as candidates of the labelling path; the easy
    answer the Proposer would have written is the true one."""
    return [
        SolverCandidate(pid, item.easy.answer, answers[f"{pid}-easy"], answers[f"{pid}-hard"])
        for item in items
        for pid in [PROBE_PREFIX + item.id]
        if f"{pid}-easy" in answers and f"{pid}-hard" in answers
    ]


def probe_rows(
    ctx: StageContext,
    items: list[ChartItem],
    candidates: list[SolverCandidate],
    labels: Mapping[str, ItemLabel],
    grader: Grader,
    labeller: str,
) -> list[dict[str, Any]]:
    """One row per labelled probe: its truth, the votes, the label, whether the label is right
    (by the training grader) and why the Solver-data filter would have dropped it."""
    truth = {PROBE_PREFIX + item.id: item for item in items}
    requests = [
        GradeRequest(c.item_id, vote, truth[c.item_id].hard.answer)
        for c in candidates
        if (vote := labels[c.item_id].label) is not None
    ]
    graded = grader.grade(requests)
    ctx.ledger.record_grades(graded)
    table = GradeTable(graded)
    report = solver_data_filter({c.item_id: labels[c.item_id] for c in candidates},
                                spec=ctx.spec.filters)  # fmt: skip
    rows = []
    for c in candidates:
        item, label = truth[c.item_id], labels[c.item_id]
        correct = label.label is not None and table(label.label, item.hard.answer) == "correct"
        rows.append(
            {
                "id": c.item_id,
                "chart": item.kind,
                "skill": item.hard.skill,
                "question": item.hard.question,
                "truth": item.hard.answer,
                "label": label.label,
                "label_correct": correct,
                "hard_answers": list(c.hard_answers),
                "easy_answers": list(c.easy_answers),
                "hard_consistency": label.hard_consistency,
                "vote_margin": label.vote_margin,
                "easy_score": label.easy_score,
                "dropped": report.dropped.get(c.item_id),
                "labelled_by": labeller,
            }
        )
    return rows
