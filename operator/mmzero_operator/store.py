"""The operator's read-only view of the artifact store: which stages have their manifest.

The operator never writes artifacts and never reads their contents, only the manifests that
say a stage is done. For a local-directory store it sees the same ReadWriteMany volume the
stage pods mount, at `$MMZERO_STORE_ROOT` (default `/var/lib/mmzero`); S3 arrives with the S3
store (the operator then reads with the run's credentials Secret).
"""

from __future__ import annotations

import os
from pathlib import Path

from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.plan import all_stages
from mmzero_runtime.storage.manifest import read_manifest
from mmzero_runtime.storage.store import LocalStore

STORE_ROOT_ENV = "MMZERO_STORE_ROOT"
DEFAULT_STORE_ROOT = "/var/lib/mmzero"


class StoreUnavailable(RuntimeError):
    """The operator cannot read this run's store; the message says why and what to do."""


def run_root(spec: RunSpec, run: str, root: str | None = None) -> Path:
    """The run's directory as the operator sees it (`<store root>/<storage.uri>/<run>`)."""
    if spec.storage.uri.startswith("s3://"):
        raise StoreUnavailable(
            f"storage.uri {spec.storage.uri!r}: this operator reads local-directory stores only "
            "(a ReadWriteMany claim, spec.cluster.storage_claim); S3 support comes with the S3 "
            "artifact store"
        )
    base = Path(root or os.environ.get(STORE_ROOT_ENV, DEFAULT_STORE_ROOT))
    return base / spec.storage.uri.strip("/") / run


def done_stages(spec: RunSpec, run: str, root: str | None = None) -> set[str]:
    """Names of the stages of `run` whose manifest exists."""
    store = LocalStore(run_root(spec, run, root))
    return {s.name for s in all_stages(spec) if read_manifest(store, s.output) is not None}
