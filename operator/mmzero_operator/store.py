"""The operator's view of the artifact store: which stages have their manifest, and their health.

The operator never writes artifacts and never reads their contents, only the manifests that
say a stage is done and the small `health.json` figures its alarms are evaluated from; it
deletes a run's artifacts only when the run is deleted with `spec.cluster.delete_artifacts`.
For a local-directory store it sees the same ReadWriteMany volume the stage pods mount, at
`$MMZERO_STORE_ROOT` (default `/var/lib/mmzero`); for an S3 store it uses the run's
credentials (the Secret named by `spec.storage.credentials_secret`, given here as its decoded
data).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph import launch
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.s3 import S3Store
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

STORE_ROOT_ENV = "MMZERO_STORE_ROOT"
OPERATOR_RETRY_SECONDS = 5
"""How long one reconcile waits for an S3 store; the next reconcile tries again anyway."""


class StoreUnavailable(RuntimeError):
    """The operator cannot read this run's store; the message says why and what to do."""


def run_root(spec: RunSpec, run: str, root: str | None = None) -> Path:
    """The run's directory as the operator sees it (`<store root>/<storage.uri>/<run>`)."""
    mount = root or os.environ.get(STORE_ROOT_ENV, launch.STORE_MOUNT)
    return Path(launch.volume_run_dir(spec, run, mount))


def run_store(
    spec: RunSpec, run: str, *, root: str | None = None, secret: Mapping[str, str] | None = None
) -> ArtifactStore:
    """The run's store; S3 credentials from `secret` or the environment."""
    storage = spec.storage
    if not storage.uri.startswith("s3://"):
        return LocalStore(run_root(spec, run, root))
    try:
        return S3Store.for_run(
            storage,
            run,
            root=Path(tempfile.gettempdir()) / "mmzero-operator" / run,  # manifests are only read
            retry_seconds=OPERATOR_RETRY_SECONDS,
            environ={**os.environ, **(secret or {})},
        )
    except StoreError as error:
        where = f"Secret {storage.credentials_secret!r}" if storage.credentials_secret else "env"
        raise StoreUnavailable(f"{error} (credentials read from: {where})") from None


@dataclass(frozen=True)
class StoreView:
    """What a reconcile reads from a run's store: the stages whose manifest exists and the
    health figures those stages stored (for the alarms)."""

    done: set[str]
    health: dict[str, dict[str, float]]


_health_seen: dict[tuple[str, str], dict[str, float]] = {}
"""Health figures by (run uid, stage): a finished stage's never change, so each is read once
(a run deleted and created again has a new uid)."""


def store_view(
    spec: RunSpec,
    run: str,
    *,
    uid: str,
    root: str | None = None,
    secret: Mapping[str, str] | None = None,
) -> StoreView:
    """The finished stages of `run` and their health figures."""
    store = run_store(spec, run, root=root, secret=secret)
    try:
        finished = launch.finished(spec, store)
        unread = [s for s in finished if (uid, s.name) not in _health_seen]
        found = launch.health_figures(store, unread)
    except StoreError as error:
        raise StoreUnavailable(str(error)) from error
    for stage in unread:
        _health_seen[(uid, stage.name)] = found.get(stage.name, {})
    health = {s.name: _health_seen[(uid, s.name)] for s in finished if _health_seen[(uid, s.name)]}
    return StoreView({s.name for s in finished}, health)
