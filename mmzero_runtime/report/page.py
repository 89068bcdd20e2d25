"""`mmzero report RUN_DIR`: one self-contained HTML file of what the roles produced.

Per iteration: curves of each GRPO stage's step figures, the data stages' yields and drop
reasons, the evaluation against the base model, a gallery of Solver items (image, proposal,
questions, the Solver's votes, the label and why an item was kept or dropped) and examples of
Proposer rewards with every term, and every stage's health figures (known-answer probes,
diversity, zero-variance groups, the difficulty histogram) with the alarms they fire, which
also head the page; then the spec. Images are embedded, so the file travels alone.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from mmzero_runtime.alarms import HEALTH_FILE, Alarm
from mmzero_runtime.report.charts import line_chart
from mmzero_runtime.spec import MMZeroRun, parse_run_file
from mmzero_runtime.stages.execution.local import run_alarms
from mmzero_runtime.stages.graph.keys import REPORT_FILE, RUN_FILE
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.graph.tables import read_table
from mmzero_runtime.stages.process import measurements
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.store import ArtifactStore

GALLERY_ITEMS = 12
"""Solver items shown per iteration."""
REWARD_EXAMPLES = 6
"""Proposer responses shown per iteration."""

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 12px; }
.card { border: 1px solid #ddd; padding: 8px; font-size: 12px; }
.card img { width: 100%; border: 1px solid #eee; }
.kept { color: #2a7d2a; } .dropped, .alarm { color: #b03030; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
"""


def _records(store: ArtifactStore, key: str) -> list[dict[str, Any]]:
    """A table's rows, none before its stage wrote it; a bad row stops the report, named."""
    return read_table(store, key) if store.exists(key) else []


def _steps(store: ArtifactStore, prefix: str) -> list[dict[str, Any]]:
    return sorted(_records(store, f"{prefix}/steps.jsonl"), key=lambda r: r["step"])


def _grpo_section(store: ArtifactStore, i: int) -> str:
    charts = []
    for role in ("proposer", "coder", "solver"):
        steps = _steps(store, f"i{i}/{role}-grpo")
        if not steps:
            continue
        names = [k for k in steps[0] if k.startswith(("reward/", "proposer/", "coder/", "solver/"))]
        series = {name: [float(s.get(name, 0.0)) for s in steps] for name in names}
        charts.append(line_chart(f"{role} GRPO", series))
        charts.append(
            line_chart(
                f"{role} loss",
                {
                    "loss": [
                        float(s.get("loss/policy", 0.0)) + float(s.get("loss/kl", 0.0))
                        for s in steps
                    ]
                },
            )
        )
    return f'<div class="charts">{"".join(charts)}</div>' if charts else "<p>No GRPO steps yet.</p>"


def _yields(store: ArtifactStore, i: int) -> str:
    rows = []
    renders = _records(store, f"i{i}/coder-data/renders.jsonl")
    if renders:
        kept = sum(r["dropped"] is None for r in renders)
        reasons = Counter(r["dropped"] for r in renders if r["dropped"])
        rows.append(("Coder data", len(renders), kept, reasons))
    candidates = _records(store, f"i{i}/solver-data/candidates.jsonl")
    draws = _records(store, f"i{i}/solver-data/draws.jsonl")
    if draws:
        kept = sum(r["dropped"] is None for r in candidates)
        reasons = Counter(r["dropped"] for r in candidates if r["dropped"])
        reasons.update(f"render: {d['render']}" for d in draws if d["render"] != "ok")
        rows.append(("Solver data", len(draws), kept, reasons))
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{name}</td><td>{total}</td><td>{kept}</td><td>{kept / max(total, 1):.0%}</td>"
        f"<td>{html.escape(', '.join(f'{k}: {v}' for k, v in reasons.most_common()))}</td></tr>"
        for name, total, kept, reasons in rows
    )
    return (
        "<h3>Filter yields</h3><table><tr><th>stage</th><th>items</th><th>kept</th>"
        f"<th>yield</th><th>dropped, by reason</th></tr>{body}</table>"
    )


def _evaluation_summary(store: ArtifactStore, i: int) -> dict[str, Any] | None:
    try:
        summary: dict[str, Any] = json.loads(store.read_bytes(f"i{i}/evaluate/summary.json"))
    except StoreError:
        return None
    return summary


def _score_row(label: str, s: dict[str, Any]) -> str:
    return (
        f"<tr><td>{html.escape(label)}</td><td>{s['accuracy']:.1%}</td>"
        f"<td>{s['interval95'][0]:.1%} – {s['interval95'][1]:.1%}</td>"
        f"<td>{s['format_rate']:.0%}</td><td>{s['questions']}</td></tr>"
    )


SCORE_HEAD = (
    "<tr><th>model</th><th>accuracy</th><th>95% interval</th><th>format</th><th>questions</th></tr>"
)


def _evaluation(store: ArtifactStore, i: int) -> str:
    summary = _evaluation_summary(store, i)
    if summary is None:
        return ""
    rows = "".join(_score_row(model, summary[model]) for model in ("solver", "baseline"))
    parts = [
        f"<h3>Evaluation on held-out known-answer charts</h3><table>{SCORE_HEAD}{rows}</table>"
    ]
    for name, bench in sorted(summary.get("benchmarks", {}).items()):
        rows = "".join(_score_row(model, bench[model]) for model in ("solver", "baseline"))
        invalid = (
            f", {len(bench['invalid_rows'])} row(s) set aside" if bench["invalid_rows"] else ""
        )
        parts.append(
            f"<h3>Benchmark {html.escape(name)}</h3><p>{html.escape(bench['source'])}, sha256 "
            f"{bench['sha256'][:16]}…, {bench['items']} question(s){invalid}</p>"
            f"<table>{SCORE_HEAD}{rows}</table>"
        )
    return "".join(parts)


def _checkpoints(store: ArtifactStore, run: MMZeroRun) -> str:
    """The last and the best Solver checkpoint by the held-out accuracy, with the rule."""
    scores = {i: s for i in range(1, run.spec.iterations + 1)
              if (s := _evaluation_summary(store, i)) is not None}  # fmt: skip
    if not scores:
        return ""
    last = max(scores)
    best = max(scores, key=lambda i: (scores[i]["solver"]["accuracy"], -i))
    rows = []
    for label, i in (("last", last), ("best", best)):
        names = ["held-out", *sorted(scores[i].get("benchmarks", {}))]
        cells = [scores[i]["solver"]] + [scores[i]["benchmarks"][n]["solver"] for n in names[1:]]
        body = ", ".join(f"{n} {c['accuracy']:.1%}" for n, c in zip(names, cells, strict=True))
        rows.append(f"<tr><td>{label}</td><td>i{i}/solver-grpo/model</td><td>{body}</td></tr>")
    return (
        "<h2>Solver checkpoints</h2><table><tr><th></th><th>checkpoint</th><th>accuracy</th></tr>"
        f"{''.join(rows)}</table><p>Rule: {html.escape(scores[last]['selection'])}.</p>"
    )


def _card(store: ArtifactStore, i: int, row: dict[str, Any]) -> str:
    png = base64.b64encode(store.read_bytes(f"i{i}/solver-data/{row['image']}")).decode()
    p = row["proposal"]
    status = (
        '<span class="kept">kept</span>'
        if row["dropped"] is None
        else f'<span class="dropped">dropped: {html.escape(row["dropped"])}</span>'
    )
    votes = ", ".join(html.escape(str(a)) for a in row["hard_answers"])
    return (
        f'<div class="card"><img src="data:image/png;base64,{png}" alt="{html.escape(row["id"])}">'
        f"<p><b>{html.escape(p['content_type'])}</b>: {html.escape(p['caption'][:300])}</p>"
        f"<p>Easy: {html.escape(p['easy_question'])} → <b>{html.escape(p['easy_answer'])}</b></p>"
        f"<p>Hard: {html.escape(p['hard_question'])} → proposed "
        f"<b>{html.escape(p['hard_answer'])}</b></p>"
        f"<p>Solver votes: {votes}<br>label <b>{html.escape(str(row['label']))}</b>, "
        f"hard consistency {row['hard_consistency']:.2f}, easy score "
        f"{row['easy_score'] if row['easy_score'] is None else round(row['easy_score'], 2)}</p>"
        f"<p>{status}</p></div>"
    )


def _gallery(store: ArtifactStore, i: int) -> str:
    rows = _records(store, f"i{i}/solver-data/candidates.jsonl")
    if not rows:
        return ""
    rows.sort(key=lambda r: (r["dropped"] is not None, r["id"]))
    cards = "".join(_card(store, i, row) for row in rows[:GALLERY_ITEMS])
    title = "Solver items (drawn by the Coder, labelled by the Solver)"
    return f"<h3>{title}</h3><div class='gallery'>{cards}</div>"


def _proposer_examples(store: ArtifactStore, i: int) -> str:
    rows = [r for r in _records(store, f"i{i}/proposer-grpo/rewards.jsonl") if r.get("proposal")]
    if not rows:
        return ""
    rows.sort(key=lambda r: -(r["reward"] or -9))
    body = "".join(
        f"<tr><td>{r['step']}</td><td>{html.escape(r['proposal']['caption'][:160])}</td>"
        f"<td>{r['reward'] if r['reward'] is None else round(r['reward'], 3)}</td>"
        f"<td>{html.escape(', '.join(f'{k} {v:.2f}' for k, v in r['terms'].items()))}</td></tr>"
        for r in rows[:REWARD_EXAMPLES]
    )
    return (
        "<h3>Proposer rewards (best responses, every term)</h3><table><tr><th>step</th>"
        f"<th>caption</th><th>reward</th><th>terms</th></tr>{body}</table>"
    )


def _resources(root: Path, run: MMZeroRun, i: int) -> str:
    """Wall time and memory of each finished stage; per-step memory and time of GRPO stages."""
    stages = [s for s in all_stages(run.spec) if s.iteration == i]
    rows = []
    charts = []
    for stage in stages:
        summary = measurements.read_summary(root, stage.name)
        if summary is not None:
            rows.append(
                f"<tr><td>{html.escape(stage.name)}</td><td>{summary['seconds']:.0f}</td>"
                f"<td>{summary['peak_rss_bytes'] / 2**20:.0f}</td></tr>"
            )
        steps = measurements.read_steps(root, stage.name)
        if steps:
            series = {
                "resident MiB": [r.get("memory/rss_bytes", 0.0) / 2**20 for r in steps],
                "step s": [
                    r.get("time/rollout_seconds", 0.0) + r.get("time/step_seconds", 0.0)
                    for r in steps
                ],
            }
            charts.append(line_chart(f"{stage.kind} memory and time", series))
    if not rows:
        return ""
    return (
        "<h3>Resources</h3><table><tr><th>stage</th><th>seconds</th><th>peak resident MiB</th>"
        f"</tr>{''.join(rows)}</table><div class='charts'>{''.join(charts)}</div>"
    )


def _health(store: ArtifactStore, run: MMZeroRun, i: int, alarms: list[Alarm]) -> str:
    """Each finished stage's health figures; a figure that fires an alarm is marked."""
    rows = []
    for stage in (s for s in all_stages(run.spec) if s.iteration == i):
        try:
            body = json.loads(store.read_bytes(f"{stage.output}/{HEALTH_FILE}"))
        except StoreError:
            continue
        marked = {a.figure for a in alarms if a.stage == stage.name}
        for figure, value in body["figures"].items():
            cls = ' class="alarm"' if figure in marked else ""
            rows.append(f"<tr{cls}><td>{html.escape(stage.name)}</td><td>{html.escape(figure)}"
                        f"</td><td>{value:.3g}</td></tr>")  # fmt: skip
        for name, counts in body["histograms"].items():
            bins = " ".join(f"{k / len(counts):.1f}:{n}" for k, n in enumerate(counts))
            rows.append(f"<tr><td>{html.escape(stage.name)}</td><td>{html.escape(name)} "
                        f"(items per bin)</td><td>{bins}</td></tr>")  # fmt: skip
    if not rows:
        return ""
    return (
        "<h3>Health</h3><table><tr><th>stage</th><th>figure</th><th>value</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _alarms(alarms: list[Alarm], run: MMZeroRun) -> str:
    if not alarms:
        return "<p>No health alarm.</p>"
    action = "stop the run" if run.spec.health.on_alarm == "stop" else "warn"
    items = "".join(f"<li>{html.escape(a.message)}</li>" for a in alarms)
    return f"<h2 class='alarm'>Alarms (spec.health.on_alarm: {action})</h2><ul>{items}</ul>"


def build_report(store: ArtifactStore) -> Path:
    """Write `report.html` into the store and return its local path (under `store.root`)."""
    run = parse_run_file(store.read_bytes(RUN_FILE), f"{store}/{RUN_FILE}")
    with contextlib.suppress(StoreError):  # an S3 store's metric files, mirrored for reading
        store.path(measurements.METRICS_DIR)
    alarms = run_alarms(run, store)
    sections = []
    for i in range(1, run.spec.iterations + 1):
        sections.append(
            f"<h2>Iteration {i}</h2>{_grpo_section(store, i)}{_yields(store, i)}"
            f"{_evaluation(store, i)}{_health(store, run, i, alarms)}{_gallery(store, i)}"
            f"{_proposer_examples(store, i)}{_resources(store.root, run, i)}"
        )
    spec_text = yaml.safe_dump(run.model_dump(mode="json"), sort_keys=False)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>MM-Zero run "
        f"{html.escape(run.metadata.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>MM-Zero run {html.escape(run.metadata.name)}</h1>{_alarms(alarms, run)}"
        f"{_checkpoints(store, run)}{''.join(sections)}"
        f"<h2>Spec</h2><pre>{html.escape(spec_text)}</pre></body></html>"
    )
    store.write_bytes(REPORT_FILE, page.encode())
    return store.path(REPORT_FILE)
