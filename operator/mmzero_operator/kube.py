"""The operator's one door to the API server: the client, every call, and what they cache.

One counting client (a connection per reconcile thread), reads as plain JSON, creates that
adopt on 409, and the per-run lock that coalesces bursts of triggers into one reconcile more.
`reconcile_run` gathers the facts, asks `reconcile.reconcile` and carries out its decision.
Caches: the run files written (no call for an unchanged spec) and the render service's pods
(one read serves every run for `RENDER_READ_SECONDS`).
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
from typing import Any
from urllib.parse import urlsplit

import kopf

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

from mmzero_operator import metrics, observe
from mmzero_operator import reconcile as core
from mmzero_operator.crd import PLURAL, VERSION
from mmzero_operator.manifests import with_stage_env
from mmzero_operator.names import FINALIZER, selector, spec_config_name
from mmzero_operator.policies import deletion
from mmzero_operator.store import StoreUnavailable, run_store, store_view
from mmzero_runtime.spec import API_GROUP, RunSpec
from mmzero_runtime.stages.graph.launch import STAGE_ENV_NAMES

log = logging.getLogger(__name__)

WORKERS = int(os.environ.get("MMZERO_WORKERS", "128"))
"""Reconcile threads (`$MMZERO_WORKERS`); the API client keeps one connection per thread. A
thread mostly waits on the API server, so they are cheap (100 more: +9 MiB), and a burst of runs
beyond them waits its turn: 100 runs created at once got their first Job within 0.4 s (p99)
with 100 threads, 3.1 s with 64, 6.3 s with 32 (benchmarks/RESULTS.md)."""
RENDER_NAMESPACE_ENV = "MMZERO_RENDER_NAMESPACE"
RENDER_SELECTOR_ENV = "MMZERO_RENDER_SELECTOR"
RENDER_READ_SECONDS = 10.0
"""How long one read of the render service's pods serves every run's reconcile."""


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


def _core() -> CoreV1Api:
    return CoreV1Api(_api())


def _networking() -> NetworkingV1Api:
    return NetworkingV1Api(_api())


def _raw(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A read as plain JSON: skips the client's model classes, the slow part of a reconcile."""
    response = call(*args, _preload_content=False, **kwargs)
    found: dict[str, Any] = json.loads(response.data)
    return found


def _listed(list_call: Any, namespace: str, run: str, cached: bool = True) -> list[dict[str, Any]]:
    """The run's Jobs, pods or Deployments (by our labels). `cached`: from the API server's
    watch cache (`resourceVersion=0`), with no quorum read of etcd and no wait for the cache
    to catch up. The cache may lag its watchers by a moment, which a reconcile survives: a
    child made a moment ago and missing here is created again and adopted (409), one gone a
    moment ago is deleted again (404), and a Job that finished is seen finished by the
    reconcile its event starts, since the event came through the same cache."""
    recent = {"resource_version": "0"} if cached else {}
    found = _raw(list_call, namespace, label_selector=selector(run), **recent)
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
            "NetworkPolicy": _networking().create_namespaced_network_policy,
            "ConfigMap": _core().create_namespaced_config_map,
        }
        creators[obj["kind"]](namespace, manifest, _preload_content=False)  # answer unused
        log.info("created %s %s/%s", obj["kind"], namespace, obj["metadata"]["name"])
        return True
    except ApiException as error:
        if error.status != 409:  # 409: made before a restart; it carries our labels and owner
            raise
        return False


def _delete_server(namespace: str, name: str) -> None:
    """Remove a frozen-role server's Deployment, Service and NetworkPolicy (gone is fine)."""
    deletes = (
        _apps().delete_namespaced_deployment,
        _core().delete_namespaced_service,
        _networking().delete_namespaced_network_policy,
    )
    for delete in deletes:
        try:
            delete(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise
    log.info("deleted frozen-role server %s/%s", namespace, name)


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


_render_read: tuple[float, list[observe.PodFact] | None] = (-RENDER_READ_SECONDS, None)


def _render_pods() -> list[observe.PodFact] | None:
    """The shared render service's pods (the chart names them by namespace and selector), read
    at most every RENDER_READ_SECONDS; None when none is named or they cannot be read."""
    global _render_read
    namespace, pods = os.environ.get(RENDER_NAMESPACE_ENV), os.environ.get(RENDER_SELECTOR_ENV)
    if not namespace or not pods:
        return None
    if time.monotonic() - _render_read[0] < RENDER_READ_SECONDS:
        return _render_read[1]
    facts: list[observe.PodFact] | None
    try:
        found = _raw(_core().list_namespaced_pod, namespace, label_selector=pods)["items"]
        facts = [observe.pod_fact(pod) for pod in found]
    except ApiException as error:
        log.warning("cannot read the render service's pods in %s (%s)", namespace, error.reason)
        facts = None
    _render_read = (time.monotonic(), facts)
    return facts


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


def _patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    _custom().patch_namespaced_custom_object_status(
        API_GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def _children(namespace: str, name: str) -> observe.Children:
    pods = _listed(_core().list_namespaced_pod, namespace, name)
    jobs = _listed(_batch().list_namespaced_job, namespace, name)
    deployments = _listed(_apps().list_namespaced_deployment, namespace, name)
    return observe.children(jobs, pods, deployments)


def reconcile_run(
    namespace: str, name: str, new: Mapping[str, Any] | None = None
) -> core.Decision | None:
    """One reconcile of one run (the caller holds the run's lock); None when the run is gone.
    `new`: the object of a run just created (its ADDED event). No operator has seen it, so it
    has no children to list and needs no second read: its first Job is 2 API calls away, not 6.
    (A child left by a deleted run of the same name is found by the create's 409 and by the
    reconcile its Job's events start.)"""
    if new is not None:
        body, children = copy.deepcopy(dict(new)), observe.Children()
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
            _patch_status(namespace, name, status)
        raise kopf.TemporaryError(str(error), delay=30) from error
    decision = core.reconcile(
        body, children.jobs, view.done, time.time(), children.servers, children.server_pods,
        health=view.health, render_pods=_render_pods(),
    )  # fmt: skip
    _apply(namespace, body, decision)
    return decision


def _apply(namespace: str, body: dict[str, Any], decision: core.Decision) -> None:
    """Carry out `decision`: the finalizer first (before anything can write an artifact), then
    the run file, creates, deletes, (un)suspends, and the status last, only if it changed."""
    if decision.create and deletion.deletes_artifacts(body["spec"]):
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
        _patch_status(namespace, body["metadata"]["name"], decision.status)


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


_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
"""One per run: its reconciles never overlap."""
_wanted: set[tuple[str, str]] = set()
"""Runs asked to reconcile while a reconcile of theirs was running."""
_wanted_guard = threading.Lock()


def reconcile(
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


def stop_children(namespace: str, name: str) -> list[str]:
    """Suspend the run's unfinished Jobs and remove its servers; the names of its pods that
    still run (consistent reads: no pod may outlive the artifacts it writes)."""
    jobs = _listed(_batch().list_namespaced_job, namespace, name, cached=False)
    _set_suspend(namespace, deletion.to_suspend(jobs), True)  # the Job controller stops pods
    for server in _listed(_apps().list_namespaced_deployment, namespace, name):
        _delete_server(namespace, server["metadata"]["name"])
    return deletion.live(_listed(_core().list_namespaced_pod, namespace, name, cached=False))


def delete_artifacts(namespace: str, name: str, spec: RunSpec) -> None:
    """Empty the run's store prefix (the credentials Secret read from `namespace`)."""
    run_store(spec, name, secret=_store_secret(namespace, spec)).delete_all()
    log.info("deleted the artifacts of run %s/%s", namespace, name)
