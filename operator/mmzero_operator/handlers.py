"""kopf handlers: gather what the reconcile core needs, carry out its decision. Nothing else.

Every trigger (run created, changed or found at start-up, a periodic timer, an event of one of
its Jobs) runs the same `reconcile_run`, which reads the run, its Jobs and the store, asks
`reconcile.reconcile` what to do and does it. Creates use deterministic names, so a 409
means the object is already there (made before a restart): it is adopted, never duplicated.

Run with `kopf run -m mmzero_operator.handlers --standalone --all-namespaces` (or
`--namespace NS`, several allowed; `--liveness=http://0.0.0.0:8081/healthz` for probes).
`$MMZERO_RECONCILE_SECONDS` sets the timer (default 30), `$MMZERO_METRICS_PORT` the port of
`/metrics` (default 8080, 0 turns it off).
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import kopf
from kubernetes import config

# Imported here, not on first use: the client loads its API classes lazily (seconds of
# compiling on a start without bytecode), which the first burst of reconciles would wait for.
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    BatchV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    NetworkingV1Api,
)
from kubernetes.client.exceptions import ApiException

from mmzero_operator import metrics
from mmzero_operator import reconcile as core
from mmzero_operator.children import (
    LABEL_RUN,
    LABEL_SERVER,
    MANAGED_BY,
    STAGE_ENV_NAMES,
    spec_config_name,
    with_stage_env,
)
from mmzero_operator.crd import PLURAL, VERSION
from mmzero_operator.store import StoreUnavailable, run_store, store_view
from mmzero_runtime.spec import API_GROUP, RunSpec
from mmzero_runtime.storage.errors import StoreError

log = logging.getLogger(__name__)

INTERVAL = float(os.environ.get("MMZERO_RECONCILE_SECONDS", "30"))
"""The periodic safety-net reconcile; Job events and run changes reconcile at once anyway."""
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
FINALIZER = f"{API_GROUP}/operator"
"""Holds a run with `cluster.delete_artifacts` until its artifacts are deleted."""
WORKERS = int(os.environ.get("MMZERO_WORKERS", "128"))
"""Reconcile threads (`$MMZERO_WORKERS`); the API client keeps one connection per thread. A
thread mostly waits on the API server, so they are cheap (100 more: +9 MiB), and a burst of runs
beyond them waits its turn: 100 runs created at once got their first Job within 0.4 s (p99)
with 100 threads, 3.1 s with 64, 6.3 s with 32 (benchmarks/RESULTS.md)."""


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
    settings.execution.max_workers = WORKERS
    metrics.serve(int(os.environ.get("MMZERO_METRICS_PORT", "8080")))
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class _CountingClient(ApiClient):
    """One connection pool for every call, each call counted by verb and resource. The pool
    holds a connection per reconcile thread: the client's default (5 per CPU) made most calls
    of a busy operator open, and pay the TLS handshake of, a connection of its own."""

    def call_api(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(str(url)).path.split("/")
        at = parts.index("namespaces") + 2 if "namespaces" in parts else len(parts) - 1
        metrics.API_REQUESTS.labels(str(method), parts[min(at, len(parts) - 1)]).inc()
        return super().call_api(method, url, *args, **kwargs)


_client: list[_CountingClient] = []


def _api() -> _CountingClient:
    if not _client:
        configuration = Configuration.get_default_copy()
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize, WORKERS + 4
        )  # the reconcile threads, the render read and the delete handler
        _client.append(_CountingClient(configuration))
    return _client[0]


def _custom() -> CustomObjectsApi:
    return CustomObjectsApi(_api())


def _batch() -> BatchV1Api:
    return BatchV1Api(_api())


def _apps() -> AppsV1Api:
    return AppsV1Api(_api())


def _delete_server(namespace: str, name: str) -> None:
    """Remove a frozen-role server's Deployment, Service and NetworkPolicy (gone is fine)."""
    deletes = (
        _apps().delete_namespaced_deployment,
        _core().delete_namespaced_service,
        NetworkingV1Api(_api()).delete_namespaced_network_policy,
    )
    for delete in deletes:
        try:
            delete(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise
    log.info("deleted frozen-role server %s/%s", namespace, name)


def _core() -> CoreV1Api:
    return CoreV1Api(_api())


def _raw(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A read as plain JSON: skips the client's model classes, the slow part of a reconcile."""
    response = call(*args, _preload_content=False, **kwargs)
    found: dict[str, Any] = json.loads(response.data)
    return found


RENDER_NAMESPACE_ENV = "MMZERO_RENDER_NAMESPACE"
RENDER_SELECTOR_ENV = "MMZERO_RENDER_SELECTOR"
RENDER_READ_SECONDS = 10.0
"""How long one read of the render service's pods serves every run's reconcile."""
_render_read: tuple[float, list[core.PodFact] | None] = (-RENDER_READ_SECONDS, None)


def _render_pods() -> list[core.PodFact] | None:
    """The shared render service's pods (the chart names them by namespace and selector), read
    at most every RENDER_READ_SECONDS; None when none is named or they cannot be read."""
    global _render_read
    namespace, selector = os.environ.get(RENDER_NAMESPACE_ENV), os.environ.get(RENDER_SELECTOR_ENV)
    if not namespace or not selector:
        return None
    if time.monotonic() - _render_read[0] < RENDER_READ_SECONDS:
        return _render_read[1]
    facts: list[core.PodFact] | None
    try:
        pods = _raw(_core().list_namespaced_pod, namespace, label_selector=selector)["items"]
        facts = [core.pod_fact(pod) for pod in pods]
    except ApiException as error:
        log.warning("cannot read the render service's pods in %s (%s)", namespace, error.reason)
        facts = None
    _render_read = (time.monotonic(), facts)
    return facts


def _listed(list_call: Any, namespace: str, run: str, cached: bool = True) -> list[dict[str, Any]]:
    """The run's Jobs, pods or Deployments (by our labels). `cached`: from the API server's
    watch cache (`resourceVersion=0`), with no quorum read of etcd and no wait for the cache
    to catch up. The cache may lag its watchers by a moment, which a reconcile survives: a
    child made a moment ago and missing here is created again and adopted (409), one gone a
    moment ago is deleted again (404), and a Job that finished is seen finished by the
    reconcile its event starts, since the event came through the same cache."""
    selector = ",".join(f"{k}={v}" for k, v in {LABEL_RUN: run, **MANAGED_BY}.items())
    recent = {"resource_version": "0"} if cached else {}
    found = _raw(list_call, namespace, label_selector=selector, **recent)
    items: list[dict[str, Any]] = found["items"]
    return items


def _create(namespace: str, obj: dict[str, Any]) -> bool:
    """Create `obj`; False when it is already there."""
    manifest: Any = obj  # the client takes plain dicts as well as its model classes
    try:
        creators: dict[str, Any] = {
            "Job": _batch().create_namespaced_job,
            "Deployment": _apps().create_namespaced_deployment,
            "Service": _core().create_namespaced_service,
            "NetworkPolicy": NetworkingV1Api(_api()).create_namespaced_network_policy,
            "ConfigMap": _core().create_namespaced_config_map,
        }
        creators[obj["kind"]](namespace, manifest, _preload_content=False)  # answer unused
        log.info("created %s %s/%s", obj["kind"], namespace, obj["metadata"]["name"])
        return True
    except ApiException as error:
        if error.status != 409:  # 409: made before a restart; it carries our labels and owner
            raise
        return False


_config_synced: dict[tuple[str, str], str] = {}
"""Run file text last written or seen per ConfigMap: unchanged specs cost no API call."""


def _sync_config_map(namespace: str, wanted: dict[str, Any]) -> None:
    name = wanted["metadata"]["name"]
    text = wanted["data"]["run.yaml"]
    if _config_synced.get((namespace, name)) == text:
        return
    if not _create(namespace, wanted):  # a new run's is new: one call, not a read first
        found = _raw(_core().read_namespaced_config_map, name, namespace)
        if found.get("data") != wanted["data"]:
            _core().patch_namespaced_config_map(name, namespace, {"data": wanted["data"]})
    _config_synced[(namespace, name)] = text


def _set_suspend(namespace: str, names: list[str], suspend: bool) -> None:
    for name in names:
        _batch().patch_namespaced_job(name, namespace, {"spec": {"suspend": suspend}})


def _changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return any(old.get(key) != value for key, value in new.items())


def _store_secret(namespace: str, spec: RunSpec) -> dict[str, str] | None:
    """The decoded data of the run's S3 credentials Secret; None when the spec names none."""
    secret_name = spec.storage.credentials_secret
    if secret_name is None or not spec.storage.uri.startswith("s3://"):
        return None
    try:
        secret = _raw(_core().read_namespaced_secret, secret_name, namespace)
    except ApiException as error:
        if error.status == 404:
            raise StoreUnavailable(
                f"Secret {secret_name!r} (spec.storage.credentials_secret) is not in namespace "
                f"{namespace}; create it with keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                "AWS_ENDPOINT_URL"
            ) from None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _read_run(namespace: str, name: str) -> dict[str, Any]:
    return _raw(_custom().get_namespaced_custom_object, API_GROUP, VERSION, namespace, PLURAL, name)


@dataclass
class _Children:
    """What a run's reconcile observes of its children."""

    jobs: list[core.JobState] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    server_pods: dict[str, list[core.PodFact]] = field(default_factory=dict)


def _children(namespace: str, name: str) -> _Children:
    pods: defaultdict[str, list[core.PodFact]] = defaultdict(list)
    server_pods: defaultdict[str, list[core.PodFact]] = defaultdict(list)
    for pod in _listed(_core().list_namespaced_pod, namespace, name):
        labels = pod["metadata"]["labels"]
        if LABEL_SERVER in labels:
            server_pods[labels[LABEL_SERVER]].append(core.pod_fact(pod))
        else:
            pods[labels.get("job-name", "")].append(core.pod_fact(pod))
    jobs = [
        state
        for job in _listed(_batch().list_namespaced_job, namespace, name)
        if (state := core.job_state(job, pods[job["metadata"]["name"]])) is not None
    ]
    servers = [
        d["metadata"]["name"] for d in _listed(_apps().list_namespaced_deployment, namespace, name)
    ]
    return _Children(jobs, servers, dict(server_pods))


def reconcile_run(
    namespace: str, name: str, new: Mapping[str, Any] | None = None
) -> core.Decision | None:
    """One reconcile of one run (the caller holds the run's lock); None when the run is gone.
    `new`: the object of a run just created (its ADDED event). No operator has seen it, so it
    has no children to list and needs no second read: its first Job is 2 API calls away, not 6.
    (A child left by a deleted run of the same name is found by the create's 409 and by the
    reconcile its Job's events start.)"""
    if new is not None:
        body, children = copy.deepcopy(dict(new)), _Children()
    else:
        try:
            body = _read_run(namespace, name)
        except ApiException as error:
            if error.status == 404:
                _config_synced.pop((namespace, spec_config_name(name)), None)
                return None
            raise
        if body["metadata"].get("deletionTimestamp"):
            return None
        children = _children(namespace, name)
    try:
        spec = RunSpec.model_validate(body["spec"])
        view = store_view(
            spec, name, uid=body["metadata"]["uid"], secret=_store_secret(namespace, spec)
        )
    except StoreUnavailable as error:
        status = core.store_unavailable(body, str(error), time.time())
        if _changed(body.get("status") or {}, status):
            _custom().patch_namespaced_custom_object_status(
                API_GROUP, VERSION, namespace, PLURAL, name, {"status": status}
            )
        raise kopf.TemporaryError(str(error), delay=30) from error
    decision = core.reconcile(
        body, children.jobs, view.done, time.time(), children.servers, children.server_pods,
        health=view.health, render_pods=_render_pods(),
    )  # fmt: skip
    if decision.create and _deletes_artifacts(body["spec"]):
        _hold_until_deleted(namespace, body)
    if decision.config_map is not None:
        _sync_config_map(namespace, decision.config_map)
    stage_env = {name: os.environ[name] for name in STAGE_ENV_NAMES if os.environ.get(name)}
    for obj in decision.create:
        _create(namespace, with_stage_env(obj, stage_env) if obj["kind"] == "Job" else obj)
    for server in decision.delete_servers:
        _delete_server(namespace, server)
    _set_suspend(namespace, decision.suspend, True)
    _set_suspend(namespace, decision.resume, False)
    if _changed(body.get("status") or {}, decision.status):
        _custom().patch_namespaced_custom_object_status(
            API_GROUP, VERSION, namespace, PLURAL, name, {"status": decision.status}
        )
    return decision


def _hold_until_deleted(namespace: str, body: Mapping[str, Any]) -> None:
    """Put the finalizer on a run that deletes its artifacts before anything of it can write
    one. kopf adds it too, but it may not have yet when a run's first reconcile starts at its
    ADDED event, and a run deleted without it would leave its artifacts behind. The patch is
    conditional on the run's resourceVersion, so it never adds the finalizer twice."""
    name = body["metadata"]["name"]
    for _ in range(3):
        finalizers = list(body["metadata"].get("finalizers") or [])
        if FINALIZER in finalizers:
            return
        patch = {"metadata": {"finalizers": [*finalizers, FINALIZER],
                              "resourceVersion": body["metadata"]["resourceVersion"]}}  # fmt: skip
        try:
            _custom().patch_namespaced_custom_object(
                API_GROUP, VERSION, namespace, PLURAL, name, patch, _preload_content=False
            )
            return
        except ApiException as error:
            if error.status != 409:  # 409: changed meanwhile (kopf's own finalizer, say)
                raise
        body = _read_run(namespace, name)
    raise kopf.TemporaryError(f"run {namespace}/{name} keeps changing; retrying", delay=5)


_wanted: set[tuple[str, str]] = set()
"""Runs asked to reconcile while a reconcile of theirs was running."""
_wanted_guard = threading.Lock()


def _reconcile(
    trigger: str, namespace: str | None, name: str, new: Mapping[str, Any] | None = None
) -> None:
    """Reconcile a run, coalescing bursts: a trigger that finds a reconcile of the same run
    running leaves a note instead of queueing behind it, and that reconcile runs once more
    (reading everything) when it ends (a Job's status changes several times in a second).
    `new` as in `reconcile_run`."""
    key = (namespace or "default", name)
    lock = _locks[key]
    if not lock.acquire(blocking=False):
        with _wanted_guard:  # the holder releases only under this guard: no note is lost
            if not lock.acquire(blocking=False):
                _wanted.add(key)
                metrics.RECONCILES.labels(trigger, "coalesced").inc()
                return
    while True:
        with _wanted_guard:
            _wanted.discard(key)
        try:
            metrics.measured(trigger, key, functools.partial(reconcile_run, *key, new))
            new = None
        except BaseException:
            lock.release()
            raise
        with _wanted_guard:
            if key not in _wanted:
                lock.release()
                return


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
    if core.run_changed(type, body):
        _reconcile("run", namespace, name, event["object"] if type == "ADDED" else None)


@kopf.timer(API_GROUP, VERSION, PLURAL, interval=INTERVAL, initial_delay=INTERVAL)
def on_timer(namespace: str | None, name: str, **_: Any) -> None:
    """Level-based safety net: catches anything no event announced (and backoff deadlines)."""
    _reconcile("timer", namespace, name)


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
        _reconcile("job", namespace, labels[LABEL_RUN])


def _deletes_artifacts(spec: Mapping[str, Any], **_: Any) -> bool:
    return bool((spec.get("cluster") or {}).get("delete_artifacts"))


@kopf.on.delete(API_GROUP, VERSION, PLURAL, when=_deletes_artifacts)
def on_run_deleted(namespace: str | None, name: str, spec: Mapping[str, Any], **_: Any) -> None:
    """`cluster.delete_artifacts`: stop the run's pods, then empty its store. Until that is
    done the run's finalizer keeps it (and its Jobs) from going away."""
    namespace = namespace or "default"
    running = [  # consistent reads: no pod may outlive the artifacts it writes
        state.name
        for job in _listed(_batch().list_namespaced_job, namespace, name, cached=False)
        if (state := core.job_state(job)) is not None and state.outcome in ("waiting", "running")
    ]
    _set_suspend(namespace, running, True)  # the Job controller stops their pods
    for server in _listed(_apps().list_namespaced_deployment, namespace, name):
        _delete_server(namespace, server["metadata"]["name"])
    live = [
        pod["metadata"]["name"]
        for pod in _listed(_core().list_namespaced_pod, namespace, name, cached=False)
        if (pod.get("status") or {}).get("phase") in ("Pending", "Running")
    ]
    if live:
        raise kopf.TemporaryError(
            f"waiting for pods {', '.join(sorted(live))} to stop before deleting the run's "
            "artifacts",
            delay=5,
        )
    run_spec = RunSpec.model_validate(spec)
    try:
        run_store(run_spec, name, secret=_store_secret(namespace, run_spec)).delete_all()
    except (StoreUnavailable, StoreError) as error:
        raise kopf.TemporaryError(
            f"cannot delete the artifacts of run {name}: {error}. The run stays until they are "
            "deleted; to keep them instead, set spec.cluster.delete_artifacts to false",
            delay=30,
        ) from error
    log.info("deleted the artifacts of run %s/%s", namespace, name)


@kopf.on.probe(id="seconds_since_last_reconcile")
def last_reconcile_age(**_: Any) -> float:
    """For `kopf run --liveness`: the age of the last reconcile (alert when it grows)."""
    return metrics.seconds_since_last_reconcile()
