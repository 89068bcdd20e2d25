"""The chart's Grafana dashboard: the committed copy is current and queries only what we export."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

from mmzero_operator import metrics
from mmzero_operator.dashboard import CHART_DASHBOARD, PANELS, render

ROOT = Path(__file__).resolve().parents[3]


def test_chart_dashboard_is_current() -> None:
    assert (ROOT / CHART_DASHBOARD).read_text() == render(), (
        "run: python -m mmzero_operator.dashboard --write charts/mmzero/dashboards/mmzero.json"
    )


def test_every_panel_queries_a_metric_the_operator_exports() -> None:
    assert metrics.RUNS is not None  # the module registered its collectors on import
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""], "info": ["_info"]}  # fmt: skip
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("mmzero")
        for suffix in suffixes.get(family.type, [""])
    }
    for panel in PANELS:
        names = set(re.findall(r"\bmmzero_[a-z_]+", panel.query))
        assert names and names <= exported, f"{panel.title}: {names - exported} not exported"
