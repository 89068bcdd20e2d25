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
    } | {stage_metrics.figure_metric(f) for f in ("reward/mean", "groups/zero_variance_share")}
    for panel in PANELS:
        if pattern := re.search(r'__name__=~"([^"]+)"', panel.query):
            term = stage_metrics.figure_metric("terms/renderability")  # a term gauge's name
            assert re.fullmatch(pattern.group(1), term), panel.title
            continue
        names = set(re.findall(r"\b(?:mmzero|process)_[a-z_]+", panel.query))
        assert names and names <= exported, f"{panel.title}: {names - exported} not exported"
