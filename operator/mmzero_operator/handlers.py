"""kopf handlers: what starts a reconcile, each a few lines calling into `kube`.

Every trigger (run created, changed or found at start-up, a periodic timer, an event of one of
its Jobs) runs the same `kube.reconcile`, which reads the run, its Jobs and the store, asks
`reconcile.reconcile` what to do and does it. Creates use deterministic names, so a 409
means the object is already there (made before a restart): it is adopted, never duplicated.

Run with `kopf run -m mmzero_operator.handlers --standalone --all-namespaces` (or
`--namespace NS`, several allowed; `--liveness=http://0.0.0.0:8081/healthz` for probes).
`$MMZERO_RECONCILE_SECONDS` sets the timer (default 30), `$MMZERO_METRICS_PORT` the port of
`/metrics` (default 8080, 0 turns it off).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import config

from mmzero_operator import kube, metrics
from mmzero_operator.crd import PLURAL, VERSION
from mmzero_operator.names import FINALIZER, LABEL_RUN, MANAGED_BY
from mmzero_operator.policies import deletion
from mmzero_operator.reconcile import run_changed
from mmzero_operator.store import StoreUnavailable
from mmzero_runtime.spec import API_GROUP, RunSpec
from mmzero_runtime.storage.errors import StoreError

INTERVAL = float(os.environ.get("MMZERO_RECONCILE_SECONDS", "30"))
"""The periodic safety-net reconcile; Job events and run changes reconcile at once anyway."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Progress in our own annotations; watches that cannot go silent unnoticed."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.persistence.finalizer = FINALIZER
    # Watch exactly the namespaces given (or all) and the CRDs present at start-up: no
    # cluster-wide list of namespaces and CRDs, which the chart's per-namespace RBAC does not
    # grant. The chart installs the CRD before the operator starts.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 5
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING
    # A deleted run waits for its timer to stop. A timer caught mid-reconcile (a blocking call
    # in a thread) cannot stop at once, and kopf looks again only after this many seconds:
    # its default, 60, held `kubectl delete` of a run for a minute on a busy operator.
    settings.background.cancellation_polling = 1
    # Reconciles are blocking calls in threads; a burst of new runs should not queue behind
    # a handful of workers.
    settings.execution.max_workers = kube.WORKERS
    metrics.serve(int(os.environ.get("MMZERO_METRICS_PORT", "8080")))
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


@kopf.on.event(API_GROUP, VERSION, PLURAL)
def on_run_event(
    type: str | None,
    event: Mapping[str, Any],
    namespace: str | None,
    name: str,
    body: Mapping[str, Any],
    **_: Any,
) -> None:
    """A run appeared (created, or listed when the operator starts) or its spec changed. A
    plain event handler, not kopf's create/update handlers: what to do comes from the run, its
    children and the store on every reconcile, so kopf needs to keep no state of its own on the
    run (those handlers patch two annotations per change, one a copy of the spec). Our own
    status writes start nothing (`reconcile.run_changed`)."""
    if run_changed(type, body):
        kube.reconcile("run", namespace, name, event["object"] if type == "ADDED" else None)


@kopf.timer(API_GROUP, VERSION, PLURAL, interval=INTERVAL, initial_delay=INTERVAL)
def on_timer(namespace: str | None, name: str, **_: Any) -> None:
    """Level-based safety net: catches anything no event announced (and backoff deadlines)."""
    kube.reconcile("timer", namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT, **MANAGED_BY})
def on_job_event(
    type: str, namespace: str | None, labels: Mapping[str, str], status: Mapping[str, Any], **_: Any
) -> None:
    """A stage Job finished or vanished: reconcile its run now, not at the next timer tick.
    Progress events of a running Job (pods created, ready) change nothing the run acts on."""
    finished = any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if finished or type == "DELETED":
        kube.reconcile("job", namespace, labels[LABEL_RUN])


@kopf.on.delete(API_GROUP, VERSION, PLURAL, when=lambda spec, **_: deletion.deletes_artifacts(spec))
def on_run_deleted(namespace: str | None, name: str, spec: Mapping[str, Any], **_: Any) -> None:
    """`cluster.delete_artifacts`: stop the run's pods, then empty its store. Until that is
    done the run's finalizer keeps it (and its Jobs) from going away."""
    namespace = namespace or "default"
    if live := kube.stop_children(namespace, name):
        raise kopf.TemporaryError(deletion.waiting_message(live), delay=5)
    try:
        kube.delete_artifacts(namespace, name, RunSpec.model_validate(spec))
    except (StoreUnavailable, StoreError) as error:
        raise kopf.TemporaryError(deletion.failed_message(name, error), delay=30) from error


@kopf.on.probe(id="seconds_since_last_reconcile")
def last_reconcile_age(**_: Any) -> float:
    """For `kopf run --liveness`: the age of the last reconcile (alert when it grows)."""
    return metrics.seconds_since_last_reconcile()
