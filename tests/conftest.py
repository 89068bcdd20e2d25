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


@pytest.fixture(scope="session")
def spawn_server() -> Iterator[Any]:
    """`spawn_server(*mmzero_args, env=None) -> url`: runs `mmzero <args> --port <free>` (a
    `serve` command) as a process, returns once its /health answers; stopped at session end."""
    import socket
    import subprocess
    import time
    import urllib.request

    processes: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "mmzero_runtime.cli", *args, "--port", str(port)]
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"mmzero {' '.join(args)} exited: {output[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                return url
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mmzero {' '.join(args)} did not answer /health in 120 s")
                time.sleep(0.2)

    yield spawn
    for process in processes:
        process.terminate()
        process.wait(30)
