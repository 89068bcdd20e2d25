"""The Grafana dashboard of the chart, generated so that its queries name the metrics the code
exports (`python -m mmzero_operator.dashboard --write charts/mmzero/dashboards/mmzero.json`; a
test fails when the chart's copy is stale). Each panel is one PromQL query."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmzero_operator.generated import print_or_write

CHART_DASHBOARD = Path("charts/mmzero/dashboards/mmzero.json")
UID = "mmzero-overview"


OPERATOR_PREFIX = "mmzero_operator_"
"""The prefix of every metric the operator exports; the rest come from stage pods."""


@dataclass(frozen=True)
class Panel:
    title: str
    query: str
    legend: str
    unit: str = "short"
    description: str = ""

    @property
    def from_operator(self) -> bool:
        """True when the panel shows the operator's metrics, not the stages'."""
        return OPERATOR_PREFIX in self.query


RATE = "[$__rate_interval]"
"""Grafana's rate window: at least four scrape intervals."""

PANELS = (
    Panel("Runs by phase", "sum by (phase) (mmzero_operator_runs)", "{{phase}}",
          description="Runs the operator reconciles, by phase."),
    Panel("Stage Jobs created",
          f"sum by (stage, retry) (increase(mmzero_operator_stage_jobs_created_total{RATE}))",
          "{{stage}} retry={{retry}}", description="New stage Jobs; retry=true: later attempts."),
    Panel("Reconciles", f"sum by (result) (rate(mmzero_operator_reconcile_total{RATE}))",
          "{{result}}", "ops"),
    Panel("Reconcile errors",
          f"sum by (trigger) (rate(mmzero_operator_reconcile_errors_total{RATE}))",
          "{{trigger}}", "ops"),
    Panel("Reconcile latency p99",
          "histogram_quantile(0.99, sum by (le) "
          f"(rate(mmzero_operator_reconcile_duration_seconds_bucket{RATE})))", "p99", "s"),
    Panel("Seconds since the last reconcile",
          "time() - max(mmzero_operator_last_reconcile_timestamp_seconds)", "age", "s",
          "Grows without bound when the operator is stuck; its liveness probe reads the same."),
    Panel("Reward by stage", "avg by (run, stage) (mmzero_grpo_reward_mean)", "{{run}} {{stage}}",
          description="Mean reward of the last GRPO step of each running stage."),
    Panel("Reward terms", 'avg by (run, stage, __name__) ({__name__=~"mmzero_grpo_terms_.+"})',
          "{{stage}} {{__name__}}", description="Mean of each reward term, last step."),
    Panel("Zero-variance groups", "avg by (run, stage) (mmzero_grpo_groups_zero_variance_share)",
          "{{run}} {{stage}}", "percentunit",
          "Share of GRPO groups whose rewards are all equal: they teach nothing."),
    Panel("Render outcomes", f"sum by (reason) (rate(mmzero_renders_total{RATE}))", "{{reason}}",
          "ops"),
    # max by stage (and shard) first: a stage scraped from its pod and pushed to a Pushgateway
    # counts once, and each shard of a sharded stage counts
    Panel("Filter yields", "sum by (filter, outcome) (max by (run, iteration, stage, index, "
          "filter, outcome) (mmzero_filter_items_total))",
          "{{filter}} {{outcome}}", description="Items kept and dropped (by reason) per filter."),
    Panel("Tokens per second", f"sum by (run, stage) (rate(mmzero_generated_tokens_total{RATE}))",
          "{{run}} {{stage}}", "short"),
    Panel("GRPO step time p50", "histogram_quantile(0.5, sum by (le, run, stage) "
          f"(rate(mmzero_grpo_step_duration_seconds_bucket{RATE})))", "{{run}} {{stage}}", "s"),
    Panel("Stage resident memory", 'max by (run, stage) (process_resident_memory_bytes{run!=""})',
          "{{run}} {{stage}}", "bytes"),
    Panel("GPU memory peak", "max by (run, stage) (mmzero_gpu_memory_peak_bytes)",
          "{{run}} {{stage}}", "bytes", "Peak GPU memory of each stage process (0 on CPU)."),
    Panel("Health alarms", "sum by (alarm) (mmzero_operator_run_alarms)", "{{alarm}}",
          description="Runs with each spec.health alarm firing (collapse, all_same_groups, "
          "label_accuracy, render_failures); the run's status.alarms says where and why."),
    Panel("Pseudo-label accuracy on probes",
          "avg by (run, iteration) (mmzero_health_probes_label_accuracy)", "{{run}} i{{iteration}}",
          "percentunit", "Known-answer probes whose majority-vote label is right."),
    Panel("Probe label accuracy by chart",
          "avg by (run, chart) (mmzero_health_probes_label_accuracy_by_chart)",
          "{{run}} {{chart}}", "percentunit"),
    Panel("Vote margin", "avg by (run, iteration) (mmzero_health_votes_margin_mean)",
          "{{run}} i{{iteration}}", "percentunit",
          "Lead of the label's votes over the runner-up, as a share of the votes."),
    Panel("Question and caption diversity",
          'min by (run, iteration, __name__) ({__name__=~"mmzero_health_diversity_.+"})',
          "i{{iteration}} {{__name__}}", "percentunit",
          "Distinct clusters per proposal and the share with a near-duplicate."),
    Panel("Difficulty histogram",
          "max by (run, iteration, bin) (mmzero_health_hard_consistency_items)",
          "i{{iteration}} {{bin}}",
          description="Solver-data items by hard-question consistency; the Goldilocks band is "
          "spec.filters' min/max_hard_consistency."),
    Panel("Log-prob gap, rollout vs trainer",
          "avg by (run, stage) (mmzero_grpo_logprob_rollout_abs_diff_mean)", "{{run}} {{stage}}",
          description="Mean |log p| difference per token between the sampler and the trainer."),
    Panel("API requests",
          f"sum by (verb, resource) (rate(mmzero_operator_api_requests_total{RATE}))",
          "{{verb}} {{resource}}", "reqps"),
)  # fmt: skip


DATASOURCE = {
    "name": "datasource",
    "type": "datasource",
    "query": "prometheus",
    "label": "Prometheus",
}


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": panel.query, "legendFormat": panel.legend}],
    }


def dashboard() -> dict[str, Any]:
    """The dashboard model (Grafana JSON, schema 39), with a Prometheus data source variable."""
    return {
        "uid": UID,
        "title": "MM-Zero",
        "tags": ["mmzero"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [DATASOURCE]},
        "panels": [_panel(i, p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    return print_or_write(render(), "chart's Grafana dashboard", CHART_DASHBOARD, argv)


if __name__ == "__main__":
    sys.exit(main())
