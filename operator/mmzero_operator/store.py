"""The operator's view of the artifact store: which stages have their manifest.

The operator never writes artifacts and never reads their contents, only the manifests that
say a stage is done; it deletes a run's artifacts only when the run is deleted with
`spec.cluster.delete_artifacts`. For a local-directory store it sees the same ReadWriteMany
volume the stage pods mount, at `$MMZERO_STORE_ROOT` (default `/var/lib/mmzero`); for an S3
store it uses the run's credentials (the Secret named by `spec.storage.credentials_secret`,
given here as its decoded data).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.plan import all_stages
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.manifest import read_manifest
from mmzero_runtime.storage.s3 import S3Store
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

STORE_ROOT_ENV = "MMZERO_STORE_ROOT"
DEFAULT_STORE_ROOT = "/var/lib/mmzero"
OPERATOR_RETRY_SECONDS = 5
"""How long one reconcile waits for an S3 store; the next reconcile tries again anyway."""


class StoreUnavailable(RuntimeError):
    """The operator cannot read this run's store; the message says why and what to do."""


def run_root(spec: RunSpec, run: str, root: str | None = None) -> Path:
    """The run's directory as the operator sees it (`<store root>/<storage.uri>/<run>`)."""
    base = Path(root or os.environ.get(STORE_ROOT_ENV, DEFAULT_STORE_ROOT))
    return base / spec.storage.uri.strip("/") / run


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


def done_stages(
    spec: RunSpec, run: str, *, root: str | None = None, secret: Mapping[str, str] | None = None
) -> set[str]:
    """Names of the stages of `run` whose manifest exists."""
    store = run_store(spec, run, root=root, secret=secret)
    try:
        return {s.name for s in all_stages(spec) if read_manifest(store, s.output) is not None}
    except StoreError as error:
        raise StoreUnavailable(str(error)) from error
