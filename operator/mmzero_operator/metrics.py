"""The operator's Prometheus metrics, shaped like controller-runtime's under our prefix.

Labels are bounded (trigger, result, phase, stage kind): run names stay out of labels; per-run
detail lives in the run's status. `mmzero_operator_last_reconcile_timestamp_seconds` is the
staleness signal for kopf's silent-watch failure mode, and the liveness probe reads it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from mmzero_operator.crd import PHASES
from mmzero_operator.names import LABEL_ATTEMPT, LABEL_STAGE
from mmzero_operator.reconcile import Decision
from mmzero_runtime.alarms import RULES

RECONCILES = Counter(
    "mmzero_operator_reconcile_total", "Reconciles of a run, by trigger and result.",
    ["trigger", "result"],
)  # fmt: skip
RECONCILE_ERRORS = Counter(
    "mmzero_operator_reconcile_errors_total", "Reconciles that raised, by trigger.", ["trigger"]
)
RECONCILE_SECONDS = Histogram(
    "mmzero_operator_reconcile_duration_seconds", "Wall time of one reconcile, by trigger.",
    ["trigger"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
LAST_RECONCILE = Gauge(
    "mmzero_operator_last_reconcile_timestamp_seconds", "Unix time of the last finished reconcile."
)
RUNS = Gauge("mmzero_operator_runs", "Runs this operator reconciles, by phase.", ["phase"])
ALARMS = Gauge(
    "mmzero_operator_run_alarms",
    "Runs with a health alarm firing now, by alarm (spec.health).",
    ["alarm"],
)
JOBS_CREATED = Counter(
    "mmzero_operator_stage_jobs_created_total",
    "Stage Jobs created, by stage kind and whether a retry.",
    ["stage", "retry"],
)
API_REQUESTS = Counter(
    "mmzero_operator_api_requests_total",
    "Kubernetes API calls of the reconciles (not kopf's watches), by verb and resource.",
    ["verb", "resource"],
)
BUILD = Info("mmzero_operator_build", "Version of the operator.")

TRIGGERS = ("run", "timer", "job")
"""What starts a reconcile (`kube.reconcile`); their error series exist from the start, at 0."""

_phases: dict[tuple[str, str], str] = {}
_alarms: dict[tuple[str, str], set[str]] = {}


def serve(port: int) -> None:
    """Expose `/metrics` on `port` (0 disables)."""
    try:
        version = metadata.version("mmzero")
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD.info({"version": version})
    for trigger in TRIGGERS:
        RECONCILE_ERRORS.labels(trigger)
    if port:
        start_http_server(port)


@contextmanager
def _timed(trigger: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(trigger).inc()
        RECONCILES.labels(trigger, "error").inc()
        raise
    finally:
        RECONCILE_SECONDS.labels(trigger).observe(time.perf_counter() - started)


def measured(
    trigger: str, key: tuple[str, str], reconcile: Callable[[], Decision | None]
) -> Decision | None:
    """Run one reconcile of run `key` (namespace, name) and record it."""
    with _timed(trigger):
        decision = reconcile()
    LAST_RECONCILE.set(time.time())
    if decision is None:  # the run is gone
        _phases.pop(key, None)
        _alarms.pop(key, None)
        RECONCILES.labels(trigger, "gone").inc()
    else:
        _phases[key] = decision.status.get("phase", "Pending")
        _alarms[key] = {alarm["name"] for alarm in decision.status.get("alarms", [])}
        for job in (obj for obj in decision.create if obj["kind"] == "Job"):
            labels = job["metadata"]["labels"]
            retry = "false" if labels[LABEL_ATTEMPT] == "1" else "true"
            JOBS_CREATED.labels(labels[LABEL_STAGE], retry).inc()
        result = "requeue_after" if decision.requeue_after else "success"
        RECONCILES.labels(trigger, result).inc()
    for phase in PHASES:
        RUNS.labels(phase).set(sum(1 for p in _phases.values() if p == phase))
    for rule in RULES:
        ALARMS.labels(rule.name).set(sum(1 for names in _alarms.values() if rule.name in names))
    return decision


def seconds_since_last_reconcile() -> float:
    """Age of the last reconcile (the liveness probe's figure)."""
    last = LAST_RECONCILE._value.get()
    return time.time() - last if last else 0.0
