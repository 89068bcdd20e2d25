"""Health figures of a finished stage, computed from the tables it saved, never from its memory.

Self-evolving training fails quietly (user-asks §3): labels right a third of the time, questions
collapsing to one template, GRPO groups whose rewards are all equal. Each stage's figures go
into its `health.json` (in its manifest), to Prometheus as `mmzero_health_<figure>` gauges, and
to the report; `alarms.evaluate` turns them into alarms. Because they are a function of the
saved tables alone, anyone can recompute them from the store (a test does).

Figures by stage kind:
* propose: `proposals/parse_share`, `proposals/content_type_top_share`, and for the caption,
  easy and hard question `diversity/<field>_distinct_share` (clusters per proposal) and
  `diversity/<field>_near_duplicate_share` (proposals with a near-duplicate);
* coder-data and solver-data: `renders/ok_share`, `renders/failure_share`,
  `renders/reason/<reason>`, `filter/kept_share`, `filter/dropped/<reason>`;
* solver-data also: `votes/margin_mean`, `difficulty/goldilocks_share`, the
  `difficulty/hard_consistency` histogram, `probes/label_accuracy` (overall, per chart kind as
  `probes/label_accuracy/<kind>`, and `probes/kept_label_accuracy` of the probes the filter
  keeps), `probes/kept_share`, `probes/vote_margin_mean`;
* GRPO stages: `groups/zero_variance_share`, `logprob/rollout_gap_mean`,
  `reward/first_step_mean`, `reward/last_step_mean`;
* evaluate: `eval/solver_accuracy`, `eval/baseline_accuracy`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmzero_runtime.rewards.diversity import cluster_sizes
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import Stage
from mmzero_runtime.stages.graph.tables import load_table

DIVERSITY_FIELDS = ("caption", "easy_question", "hard_question")
HISTOGRAM_BINS = 10
"""Bins of the hard-consistency histogram over [0, 1]."""

Reader = Callable[[str], bytes]
"""Reads a file of the stage's output by its name under the stage's prefix."""


def _share(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def _rows(read: Reader, name: str) -> list[dict[str, Any]]:
    return load_table(read(name), name)


def diversity(texts: Sequence[str], threshold: float, field: str) -> dict[str, float]:
    """Distinct clusters and the share of texts with a near-duplicate, clustered as the
    Proposer's diversity reward clusters them (1 - BLEU, average linkage, cut at `threshold`).

    >>> diversity(["a red bar chart", "a red bar chart", "a map of rivers"], 0.25, "caption")
    {'diversity/caption_distinct_share': 0.6666666666666666, \
'diversity/caption_near_duplicate_share': 0.6666666666666666}
    """
    sizes = cluster_sizes(list(texts), threshold)
    clusters = sum(1 / size for size in sizes)
    return {
        f"diversity/{field}_distinct_share": _share(round(clusters), len(sizes)),
        f"diversity/{field}_near_duplicate_share": _share(sum(s > 1 for s in sizes), len(sizes)),
    }


def _propose(spec: RunSpec, read: Reader) -> dict[str, float]:
    rows = _rows(read, keys.PROPOSALS_FOR_CODER) + _rows(read, keys.PROPOSALS_FOR_SOLVER)
    parsed = [row["proposal"] for row in rows if row["proposal"]]
    types = Counter(p["content_type"] for p in parsed)
    figures = {
        "proposals/parse_share": _share(len(parsed), len(rows)),
        "proposals/content_type_top_share": _share(max(types.values(), default=0), len(parsed)),
    }
    sample = parsed[: spec.health.diversity_sample]
    if len(sample) >= 2:
        threshold = spec.rewards.proposer.diversity_distance_threshold
        for field in DIVERSITY_FIELDS:
            figures |= diversity([p[field] for p in sample], threshold, field)
    return figures


def renders(reasons: Sequence[str]) -> dict[str, float]:
    """Render outcome shares of a data stage's drawings (`ok` or why not)."""
    counts = Counter(reasons)
    figures = {
        "renders/ok_share": _share(counts["ok"], len(reasons)),
        "renders/failure_share": _share(len(reasons) - counts["ok"], len(reasons)),
    }
    by_reason = {f"renders/reason/{r}": _share(n, len(reasons)) for r, n in counts.items()}
    return figures | dict(sorted(by_reason.items()))


def filter_yield(dropped: Sequence[str | None]) -> dict[str, float]:
    """Kept share and drop shares by reason of one filter's items."""
    counts = Counter(reason for reason in dropped if reason is not None)
    kept = len(dropped) - sum(counts.values())
    figures = {"filter/kept_share": _share(kept, len(dropped))}
    by_reason = {f"filter/dropped/{r}": _share(n, len(dropped)) for r, n in counts.items()}
    return figures | dict(sorted(by_reason.items()))


def _coder_data(spec: RunSpec, read: Reader) -> dict[str, float]:
    rows = _rows(read, keys.RENDERS)
    return renders([r for row in rows for r in row["reasons"]]) | filter_yield(
        [row["dropped"] for row in rows]
    )


def histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> list[int]:
    """Counts of `values` in `bins` equal bins of [0, 1], the last one closed.

    >>> histogram([0.0, 0.25, 0.5, 1.0], bins=4)
    [1, 1, 1, 1]
    """
    counts = [0] * bins
    for value in values:
        counts[min(int(value * bins), bins - 1)] += 1
    return counts


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _solver_data(spec: RunSpec, read: Reader) -> tuple[dict[str, float], dict[str, list[int]]]:
    draws, candidates = _rows(read, keys.DRAWS), _rows(read, keys.CANDIDATES)
    figures = renders([row["render"] for row in draws]) | filter_yield(
        [row["dropped"] for row in candidates]
    )
    consistency = [row["hard_consistency"] for row in candidates]
    low, high = spec.filters.min_hard_consistency, spec.filters.max_hard_consistency
    figures["votes/margin_mean"] = _mean([row["vote_margin"] for row in candidates])
    figures["difficulty/goldilocks_share"] = _share(
        sum(low <= c <= high for c in consistency), len(consistency)
    )
    probes = _rows(read, keys.PROBES)
    if probes:
        figures["probes/items"] = float(len(probes))
        figures["probes/label_accuracy"] = _mean([float(p["label_correct"]) for p in probes])
        figures["probes/vote_margin_mean"] = _mean([p["vote_margin"] for p in probes])
        kept = [float(p["label_correct"]) for p in probes if p["dropped"] is None]
        figures["probes/kept_share"] = _share(len(kept), len(probes))
        if kept:
            figures["probes/kept_label_accuracy"] = _mean(kept)
        for chart in sorted({p["chart"] for p in probes}):
            mine = [float(p["label_correct"]) for p in probes if p["chart"] == chart]
            figures[f"probes/label_accuracy/{chart}"] = _mean(mine)
    return figures, {"difficulty/hard_consistency": histogram(consistency)}


def _grpo(spec: RunSpec, read: Reader) -> dict[str, float]:
    steps = [row for row in _rows(read, keys.STEPS) if "skipped" not in row]
    if not steps:
        return {}
    groups = sum(row["groups/total"] for row in steps)
    figures = {
        "groups/zero_variance_share": _share(
            int(sum(row["groups/zero_variance"] for row in steps)), int(groups)
        ),
        "reward/first_step_mean": float(steps[0]["reward/mean"]),
        "reward/last_step_mean": float(steps[-1]["reward/mean"]),
    }
    gap = "logprob/rollout_abs_diff_mean"
    gaps = [row[gap] for row in steps if gap in row]
    if gaps:
        figures["logprob/rollout_gap_mean"] = _mean(gaps)
    return figures


def _evaluate(spec: RunSpec, read: Reader) -> dict[str, float]:
    summary = json.loads(read("summary.json"))
    return {f"eval/{model}_accuracy": float(summary[model]["accuracy"])
            for model in ("solver", "baseline")}  # fmt: skip


def stage_health(spec: RunSpec, stage: Stage, read: Reader) -> dict[str, Any]:
    """The body of the stage's `health.json`: `figures` (name -> number) and `histograms`
    (name -> bin counts over [0, 1])."""
    histograms: dict[str, list[int]] = {}
    match stage.kind:
        case "propose":
            figures = _propose(spec, read)
        case "coder-data":
            figures = _coder_data(spec, read)
        case "solver-data":
            figures, histograms = _solver_data(spec, read)
        case "proposer-grpo" | "coder-grpo" | "solver-grpo":
            figures = _grpo(spec, read)
        case "evaluate":
            figures = _evaluate(spec, read)
    return {"stage": stage.name, "figures": figures, "histograms": histograms}


def health_bytes(body: Mapping[str, Any]) -> bytes:
    """`health.json` as stored: sorted keys, so equal figures give equal bytes."""
    return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"
