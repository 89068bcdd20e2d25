"""The chart's Grafana dashboard: the committed copy is current and queries only what we export."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

from mmzero_operator import metrics
from mmzero_operator.dashboard import CHART_DASHBOARD, PANELS, render
from mmzero_runtime import metrics as stage_metrics

ROOT = Path(__file__).resolve().parents[3]


def test_chart_dashboard_is_current() -> None:
    assert (ROOT / CHART_DASHBOARD).read_text() == render(), (
        "run: python -m mmzero_operator.dashboard --write charts/mmzero/dashboards/mmzero.json"
    )


def test_every_panel_queries_metrics_the_code_exports() -> None:
    assert metrics.RUNS is not None  # the module registered its collectors on import
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""], "info": ["_info"]}  # fmt: skip
    registries = (REGISTRY, stage_metrics.REGISTRY)
    exported = {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    # gauges made on first use: GRPO step figures and the stages' health figures
    step_figures = ("reward/mean", "groups/zero_variance_share", "logprob/rollout_abs_diff_mean",
                    "terms/renderability")  # fmt: skip
    health_figures = ("probes/label_accuracy", "votes/margin_mean",
                      "diversity/caption_distinct_share")  # fmt: skip
    exported |= {stage_metrics.figure_metric(f) for f in step_figures}
    exported |= {stage_metrics.figure_metric(f, "mmzero_health_") for f in health_figures}
    for panel in PANELS:
        if pattern := re.search(r'__name__=~"([^"]+)"', panel.query):
            assert any(re.fullmatch(pattern.group(1), name) for name in exported), panel.title
            continue
        names = set(re.findall(r"\b(?:mmzero|process)_[a-z_]+", panel.query))
        assert names and names <= exported, f"{panel.title}: {names - exported} not exported"
