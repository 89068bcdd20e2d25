"""Fixtures for tests against a real Kubernetes control plane (marker `cluster`).

`kube_cluster` (session) starts the local control plane of hack/cluster/cluster.py in a temporary
run dir and stops it at the end. With MMZERO_TEST_KUBECONFIG=<path to a kubeconfig> it uses that
existing cluster instead (e.g. one made from hack/kind.yaml) and adds only kwok and its fake GPU
nodes. The binaries are built (or found in the cache) once, before the first test runs, so the
build does not count against a test's timeout. Without them: a failure under CI=true, a skip
otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py
import cluster as local_cluster
from cluster import Cluster, ClusterError

KUBECONFIG_ENV = "MMZERO_TEST_KUBECONFIG"
_build: dict[str, Path | str] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries once if any selected test needs the cluster (outside test timeouts)."""
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("cluster") for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "cluster tests: hack/cluster/build.sh (a first build takes ~9 min on 2 cores; cached)"
        )
    try:
        _build["bin_dir"] = local_cluster.build()
    except ClusterError as error:
        _build["error"] = str(error)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running cluster with 3 Ready fake nodes of 8 `nvidia.com/gpu` each."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external and not Path(external).is_file():
        pytest.fail(f"{KUBECONFIG_ENV}={external} is not a file", pytrace=False)
    if "bin_dir" not in _build:
        _unavailable(f"local control plane unavailable: {_build.get('error', 'not built')}")
    run_dir = tmp_path_factory.mktemp("cluster-run")
    cluster = local_cluster.up(
        run_dir,
        Path(_build["bin_dir"]),
        external_kubeconfig=Path(external) if external else None,
        tie_to_parent=True,
    )
    yield cluster
    local_cluster.down(run_dir)


@pytest.fixture
def namespace(kube_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (without waiting) afterwards."""
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:63].rstrip("-")
    kube_cluster.kubectl("create", "namespace", name)
    kube_cluster.wait_for(
        ["serviceaccount", "default", "-n", name], lambda _: True, f"ServiceAccount {name}/default"
    )
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm, built from hack/helm/go.mod by hack/build-tool.sh (cached; `make test` builds it)."""
    result = subprocess.run(
        ["bash", str(Path(__file__).resolve().parents[2] / "hack" / "build-tool.sh"), "helm"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        _unavailable(f"helm unavailable: {result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


LOG_TAIL_LINES = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed cluster test shows the end of every log its processes wrote to its tmp_path
    (the operator's, a second operator's): a timeout alone says nothing of why."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or tmp_path is None:
        return
    for log in sorted(Path(tmp_path).glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        report.sections.append((f"{log.name}, last {len(lines)} lines", "\n".join(lines)))
