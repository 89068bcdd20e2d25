"""Prometheus metrics of a stage process: what a GRPO step, a render batch, a filter and the
generators did, for the stage pod's `/metrics` (`$MMZERO_METRICS_PORT`) and, at the end, for
`metrics/<stage>.prom` in the store (a short-lived pod may end before any scrape).

No run, iteration or stage labels here: on a cluster they come from the pod's labels through
scrape relabelling (the chart's PodMonitor), so a series never outlives its pod's identity.
The one exception is the optional Pushgateway (`$MMZERO_PUSHGATEWAY_URL`): there is no pod to
relabel from, so a finished stage pushes under the grouping key run/iteration/stage.
A GRPO step's figures (`reward/mean`, `groups/zero_variance_share`, `terms/difficulty`, ...)
become gauges named `mmzero_grpo_<figure with / as _>`, e.g. `mmzero_grpo_reward_mean`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    push_to_gateway,
    start_http_server,
)

log = logging.getLogger(__name__)

PUSH_JOB = "mmzero_stage"
"""The Pushgateway job every stage pushes under."""
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total

STEPS = Counter("mmzero_grpo_steps", "GRPO steps finished by this stage.", registry=REGISTRY)
STEP_SECONDS = Histogram(
    "mmzero_grpo_step_duration_seconds",
    "Wall time of one GRPO step: rollout, rewards and update.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600),
    registry=REGISTRY,
)
TOKENS = Counter(
    "mmzero_generated_tokens", "Tokens sampled by this stage's generators.", registry=REGISTRY
)
GENERATION_SECONDS = Counter(
    "mmzero_generation_seconds", "Wall time spent sampling.", registry=REGISTRY
)
RENDERS = Counter("mmzero_renders", "SVG renders, by outcome.", ["reason"], registry=REGISTRY)
FILTERED = Counter(
    "mmzero_filter_items",
    "Items through a data filter: outcome is kept or the drop reason.",
    ["filter", "outcome"],
    registry=REGISTRY,
)
GPU_MEMORY_PEAK = Gauge(
    "mmzero_gpu_memory_peak_bytes", "Peak GPU memory allocated by this process.", registry=REGISTRY
)
HEALTH_BINS = Gauge(
    "mmzero_health_hard_consistency_items",
    "Solver-data items by the hard-question consistency of their votes, in tenths (bin 0.7: "
    "[0.7, 0.8)); the Goldilocks band is spec.filters' min/max_hard_consistency.",
    ["bin"],
    registry=REGISTRY,
)
PROBE_ACCURACY = Gauge(
    "mmzero_health_probes_label_accuracy_by_chart",
    "Share of known-answer probes whose majority-vote label is right, per chart kind.",
    ["chart"],
    registry=REGISTRY,
)
_FIGURES: dict[str, Gauge] = {}


def figure_metric(figure: str, prefix: str = "mmzero_grpo_") -> str:
    """The gauge name of a step figure: `reward/mean` -> `mmzero_grpo_reward_mean`."""
    return prefix + re.sub(r"[^a-zA-Z0-9_]", "_", figure).strip("_")


def _set_figure(name: str, value: float, help_text: str) -> None:
    if name not in _FIGURES:
        _FIGURES[name] = Gauge(name, help_text, registry=REGISTRY)
    _FIGURES[name].set(float(value))


def observe_step(figures: Mapping[str, float], seconds: float) -> None:
    """One finished GRPO step: its figures as gauges, its time, and the step count."""
    STEPS.inc()
    STEP_SECONDS.observe(seconds)
    for figure, value in figures.items():
        _set_figure(figure_metric(figure), value, f"GRPO step figure {figure}, last step.")
    try:
        import torch

        if torch.cuda.is_available():
            GPU_MEMORY_PEAK.set(torch.cuda.max_memory_allocated())
    except ImportError:  # a stage without torch (render-only) has no GPU figures
        pass


def observe_health(figures: Mapping[str, float], histograms: Mapping[str, list[int]]) -> None:
    """A finished stage's health figures (`stages/health/health.py`) as `mmzero_health_<figure>`.
    Per-reason shares are left out (`mmzero_renders_total` and `mmzero_filter_items_total`
    count them by label); per-chart probe accuracy is a label."""
    for figure, value in figures.items():
        parts = figure.split("/")
        if figure.startswith("probes/label_accuracy/"):
            PROBE_ACCURACY.labels(chart=parts[-1]).set(value)
        elif len(parts) == 2:
            name = figure_metric(figure, "mmzero_health_")
            _set_figure(name, value, f"Health figure {figure} of the stage (spec.health alarms).")
    counts = histograms.get("difficulty/hard_consistency", [])
    for index, count in enumerate(counts):
        HEALTH_BINS.labels(bin=f"{index / len(counts):.1f}").set(count)


def observe_generation(tokens: int, seconds: float) -> None:
    TOKENS.inc(tokens)
    GENERATION_SECONDS.inc(seconds)


def observe_renders(reasons: Iterable[str]) -> None:
    for reason in reasons:
        RENDERS.labels(reason=reason).inc()


def observe_filter(name: str, kept: int, dropped: Iterable[tuple[str, int]]) -> None:
    """A filter's yield: items kept, and items dropped per reason."""
    FILTERED.labels(filter=name, outcome="kept").inc(kept)
    for reason, count in dropped:
        FILTERED.labels(filter=name, outcome=reason).inc(count)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve `/metrics` on `address`:`port` for the rest of the process (0: do not serve)."""
    if port:
        start_http_server(port, addr=address, registry=REGISTRY)


def exposition() -> bytes:
    """The metrics now, in the Prometheus text format (for `metrics/<stage>.prom`)."""
    return generate_latest(REGISTRY)


def push(gateway: str, grouping: Mapping[str, str]) -> bool:
    """Push the metrics now to the Pushgateway at `gateway`, replacing the group's previous
    push; a gateway that does not answer costs a warning, never the stage."""
    try:
        push_to_gateway(gateway, PUSH_JOB, REGISTRY, grouping_key=dict(grouping), timeout=10)
    except (OSError, ValueError) as error:  # refused, timed out, HTTP error, bad URL
        log.warning(
            "could not push metrics to the Pushgateway %s (%s); the stage's final figures are "
            "in metrics/<stage>.prom in the store",
            gateway,
            error,
        )
        return False
    return True
