"""Shared test configuration: tier markers are registered in pyproject.toml (--strict-markers)."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HACK = Path(__file__).resolve().parents[1] / "hack"


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Qwen2-VL (tokenizer, processor files, weights), built once per session.

    Real architecture, a few million parameters, ~5 s to build; see mmzero_runtime/models/tiny.py.
    """
    from mmzero_runtime.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-vlm"), seed=0)


# A real MinIO (hack/minio) for the S3 store's tests. It is built once, before the first test
# runs, so a cold build (~2-4 min) does not count against a test's timeout.
_minio_build: dict[str, object] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if not any("minio_server" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    sys.path.insert(0, str(HACK / "minio"))
    import local_minio as minio

    try:
        _minio_build["binary"] = minio.build()
    except minio.ClusterError as error:
        _minio_build["error"] = str(error)


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A MinIO server on 127.0.0.1 with random credentials (hack/minio/server.py MinioServer).
    Without a MinIO binary: a failure under CI=true, a skip otherwise."""
    if "binary" not in _minio_build:
        reason = f"MinIO unavailable: {_minio_build.get('error', 'not built')}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    import local_minio as minio

    server = minio.up(tmp_path_factory.mktemp("minio"), Path(str(_minio_build["binary"])))
    yield server
    server.stop()
