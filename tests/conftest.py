"""Shared test configuration: tier markers are registered in pyproject.toml (--strict-markers)."""

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

HACK = Path(__file__).resolve().parents[1] / "hack"
TRUTHY = {"1", "true", "yes"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_http(url: str, process: Any, what: str, timeout: float = 120) -> None:
    """Return once `url` answers; fail naming `what` if `process` exits or time runs out."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else "(see its log)"
            pytest.fail(f"{what} exited: {output[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not answer {url} in {timeout:.0f} s")
            time.sleep(0.2)


def require_binary(name: str, install: str) -> None:
    """A Debian tool (`make debian-tools` installs it): under CI=true a failure, else a skip."""
    import shutil

    if shutil.which(name) is None:
        reason = f"{name} is not installed ({install})"
        if os.environ.get("CI", "").lower() in TRUTHY:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's own summaries
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> Iterator[None]:
    """End every run with a loud list of what did not run: each skipped test and its reason,
    and how many a `-m`/`-k` expression deselected (docs/testing.md, "Skips are loud"),
    just above the final counts."""
    yield
    skipped = terminalreporter.stats.get("skipped", [])
    deselected = len(terminalreporter.stats.get("deselected", []))
    if not skipped and not deselected:
        return
    counts = [f"{len(skipped)} TEST{'S' if len(skipped) != 1 else ''} SKIPPED"] if skipped else []
    counts += [f"{deselected} DESELECTED"] if deselected else []
    title = ", ".join(counts)
    terminalreporter.write_sep(
        "=", f"{title} — this run is not the whole suite", red=True, bold=True
    )
    for report in skipped:
        reason = (
            str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        )
        reason = reason.removeprefix("Skipped: ")
        terminalreporter.write_line(f"SKIPPED {report.nodeid}: {reason}", yellow=True)
    if deselected:
        terminalreporter.write_line(f"DESELECTED {deselected} by -m/-k: {_selection(config)}")


def _selection(config: pytest.Config) -> str:
    expressions = [f"-m {config.option.markexpr!r}"] if config.option.markexpr else []
    expressions += [f"-k {config.option.keyword!r}"] if config.option.keyword else []
    return " ".join(expressions) or "(another plugin's choice)"


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
        if os.environ.get("CI", "").lower() in TRUTHY:
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
    import subprocess

    processes: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        command = [sys.executable, "-m", "mmzero_runtime.cli", *args, "--port", str(port)]
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", process, f"mmzero {' '.join(args)}")
        return url

    yield spawn
    for process in processes:
        process.terminate()
        process.wait(30)


class Prometheus:
    """A real Prometheus (Debian's package) scraping `targets` every second on 127.0.0.1."""

    def __init__(
        self,
        directory: Path,
        targets: dict[str, tuple[str, dict[str, str]]],
        jobs: Sequence[dict[str, Any]] = (),
    ) -> None:
        import subprocess

        import yaml

        self.port = free_port()
        scrape = [
            *({"job_name": job, "scrape_interval": "1s",
               "static_configs": [{"targets": [target], "labels": labels}]}
              for job, (target, labels) in targets.items()),
            *jobs,
        ]  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(
            yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": scrape})
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=(directory / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_http(f"{self.url}/-/ready", self.process, "prometheus", timeout=60)

    def query_range(self, expr: str, start: float, end: float, step: str = "2s") -> Any:
        """The API's `data` of a range query; raises AssertionError with Prometheus's error."""
        import json
        import urllib.error
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{query}", timeout=30) as r:
                return json.loads(r.read())["data"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{expr}: {json.loads(error.read()).get('error')}") from None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture(scope="session")
def start_prometheus() -> Iterator[Any]:
    """`start_prometheus(directory, {job: (host:port, labels)}, [raw scrape config, ...]) ->
    Prometheus`, stopped at the end of the session."""
    require_binary("prometheus", "apt-get install prometheus")
    started: list[Prometheus] = []

    def start(
        directory: Path,
        targets: dict[str, tuple[str, dict[str, str]]],
        jobs: Sequence[dict[str, Any]] = (),
    ) -> Prometheus:
        started.append(Prometheus(directory, targets, jobs))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's package) on 127.0.0.1; yields its URL."""
    import subprocess

    require_binary("prometheus-pushgateway", "apt-get install prometheus-pushgateway")
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    process = subprocess.Popen(
        ["prometheus-pushgateway", f"--web.listen-address={url.removeprefix('http://')}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_http(f"{url}/-/ready", process, "prometheus-pushgateway", timeout=60)
    yield url
    process.terminate()
    process.wait(30)
