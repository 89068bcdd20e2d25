"""The harness of the operator tests: the operator as a `kopf run` process, the chart's
manifests, run documents, and a stand-in for the stage command (kwok's pods run no container):
when a stage's Job appears it writes that stage's manifest to the store, as `mmzero stage`
would at its end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from cluster import Cluster

from mmzero_operator.names import LABEL_RUN
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

ROOT = Path(__file__).resolve().parents[2]
RUN = "demo"
STAGES = all_stages(RunSpec(iterations=1))


class Operator:
    """`kopf run` of our handlers, watching one namespace, its log in a file."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        store: Path,
        log: Path,
        kubeconfig: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        with socket.socket() as probe:  # a free loopback port for /metrics
            probe.bind(("127.0.0.1", 0))
            self.metrics_port = probe.getsockname()[1]
        self.command = [
            sys.executable, "-m", "kopf", "run", "-m", "mmzero_operator.handlers",
            "--standalone", "--namespace", namespace,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
            "MMZERO_STORE_ROOT": str(store),
            "MMZERO_RECONCILE_SECONDS": "2",
            **(env or {}),
            # after `env`: a chart's environment names the pod's port (8080), but on this
            # machine every operator needs a free one, the one Prometheus is told to scrape
            "MMZERO_METRICS_PORT": str(self.metrics_port),
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


CHART = ROOT / "charts" / "mmzero"
KUBE_VERSION = "1.36.0"


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


def chart_manifests(helm: Path, namespace: str, *sets: str) -> list[dict[str, Any]]:
    """`helm template` of the chart as release `r` in `namespace`, with `--set` values."""
    flags = [f"--set={s}" for s in sets]
    out = run_helm(helm, "template", "r", str(CHART), "-n", namespace,
                   "--kube-version", KUBE_VERSION, *flags).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def run_document(namespace: str, **cluster: Any) -> str:
    document = {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": RUN, "namespace": namespace},
        "spec": {"model": "builtin:tiny", "iterations": 1, "cluster": cluster},
    }
    return json.dumps(document)


def run_jobs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return cluster.get_json("jobs", "-n", namespace, "-l", f"{LABEL_RUN}={RUN}")["items"]


def run_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return cluster.get_json("mmzerorun", RUN, "-n", namespace).get("status") or {}


def perform(
    store: Path | ArtifactStore, stage_name: str, files: dict[str, bytes] | None = None
) -> None:
    """What `mmzero stage` leaves behind: the stage's outputs (`files` besides a note), its
    manifest last. `store` is the operator's store root (a directory) or the run's S3 store."""
    stage = next(s for s in STAGES if s.name == stage_name)
    target = LocalStore(store / "runs" / RUN) if isinstance(store, Path) else store
    output = StageOutput(target, stage.output, stage.name)
    output.put_bytes("harness.txt", f"{stage.name} done by the test harness\n".encode())
    for name, data in (files or {}).items():
        output.put_bytes(name, data)
    output.commit()


def drive(
    cluster: Cluster,
    namespace: str,
    store: Path | ArtifactStore,
    until: int,
    seen: list[str],
    timeout: float = 180,
) -> None:
    """Perform each stage whose Job appears, in the order they appear, until `until` are done."""
    deadline = time.monotonic() + timeout
    while len(seen) < until:
        assert time.monotonic() < deadline, (
            f"stages seen {seen}; status {run_status(cluster, namespace)}"
        )
        for job in sorted(run_jobs(cluster, namespace), key=lambda j: j["metadata"]["name"]):
            labels = job["metadata"]["labels"]
            stage = f"i{labels['mmzero.dev/iteration']}-{labels['mmzero.dev/stage']}"
            if stage not in seen:
                seen.append(stage)
                perform(store, stage)
        time.sleep(0.3)


def wait_phase(cluster: Cluster, namespace: str, phase: str, timeout: float = 60) -> dict:
    return cluster.wait_for(
        ["mmzerorun", RUN, "-n", namespace],
        lambda obj: (obj.get("status") or {}).get("phase") == phase,
        f"run {RUN} {phase}",
        timeout=timeout,
    )
