"""The operator as a process against the real API server, kwok nodes running the stage pods.

kwok's pods run no container, so a harness stands in for the stage command: when a stage's Job
appears it writes that stage's manifest to the store the operator reads, as `mmzero stage`
would at its end. Everything else is real: the CRD, kopf, the Job and garbage-collector
controllers, the scheduler placing GPU pods on fake nodes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster is put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster

from mmzero_operator.children import LABEL_RUN
from mmzero_operator.crd import CHART_CRD
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.plan import all_stages
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.s3 import S3Store
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
RUN = "demo"
STAGES = all_stages(RunSpec(iterations=1))


class Operator:
    """`kopf run` of our handlers, watching one namespace, its log in a file."""

    def __init__(self, cluster: Cluster, namespace: str, store: Path, log: Path) -> None:
        with socket.socket() as probe:  # a free loopback port for /metrics
            probe.bind(("127.0.0.1", 0))
            self.metrics_port = probe.getsockname()[1]
        self.command = [
            sys.executable, "-m", "kopf", "run", "-m", "mmzero_operator.handlers",
            "--standalone", "--namespace", namespace,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "MMZERO_STORE_ROOT": str(store),
            "MMZERO_RECONCILE_SECONDS": "2",
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


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def operator(
    kube_cluster: Cluster, namespace: str, store: Path, tmp_path: Path
) -> Iterator[Operator]:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CHART_CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd/mmzeroruns.mmzero.dev")
    running = Operator(kube_cluster, namespace, store, tmp_path / "operator.log")
    running.start()
    yield running
    running.stop()


def _run(namespace: str, **cluster: Any) -> str:
    document = {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": RUN, "namespace": namespace},
        "spec": {"model": "builtin:tiny", "iterations": 1, "cluster": cluster},
    }
    return json.dumps(document)


def _jobs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return cluster.get_json("jobs", "-n", namespace, "-l", f"{LABEL_RUN}={RUN}")["items"]


def _status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return cluster.get_json("mmzerorun", RUN, "-n", namespace).get("status") or {}


def _perform(store: Path | ArtifactStore, stage_name: str) -> None:
    """What `mmzero stage` leaves behind: the stage's outputs, its manifest last. `store` is
    the operator's store root (a directory) or the run's S3 store."""
    stage = next(s for s in STAGES if s.name == stage_name)
    target = LocalStore(store / "runs" / RUN) if isinstance(store, Path) else store
    output = StageOutput(target, stage.output, stage.name)
    output.put_bytes("harness.txt", f"{stage.name} done by the test harness\n".encode())
    output.commit()


def _drive(
    cluster: Cluster,
    namespace: str,
    store: Path | ArtifactStore,
    until: int,
    seen: list[str],
    timeout: float = 90,
) -> None:
    """Perform each stage whose Job appears, in the order they appear, until `until` are done."""
    deadline = time.monotonic() + timeout
    while len(seen) < until:
        assert time.monotonic() < deadline, (
            f"stages seen {seen}; status {_status(cluster, namespace)}"
        )
        for job in sorted(_jobs(cluster, namespace), key=lambda j: j["metadata"]["name"]):
            labels = job["metadata"]["labels"]
            stage = f"i{labels['mmzero.dev/iteration']}-{labels['mmzero.dev/stage']}"
            if stage not in seen:
                seen.append(stage)
                _perform(store, stage)
        time.sleep(0.3)


def _wait_phase(cluster: Cluster, namespace: str, phase: str, timeout: float = 60) -> dict:
    return cluster.wait_for(
        ["mmzerorun", RUN, "-n", namespace],
        lambda obj: (obj.get("status") or {}).get("phase") == phase,
        f"run {RUN} {phase}",
        timeout=timeout,
    )


def test_run_goes_through_every_stage_in_order_and_succeeds(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    kube_cluster.kubectl("apply", "-f", "-", stdin=_run(namespace))
    seen: list[str] = []
    _drive(kube_cluster, namespace, store, len(STAGES), seen)
    run = _wait_phase(kube_cluster, namespace, "Succeeded")

    assert seen == [s.name for s in STAGES]
    status = run["status"]
    assert (status["stagesDone"], status["stagesTotal"]) == (7, 7)
    assert status["checkpoints"]["solver"] == "i1/solver-grpo/model"
    assert all(n == 1 for n in status["attempts"].values())
    jobs = _jobs(kube_cluster, namespace)
    assert len(jobs) == 7  # one Job per stage, no retries
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("MMZeroRun", RUN, True)
    spec_file = kube_cluster.get_json("configmap", f"{RUN}-spec", "-n", namespace)
    assert yaml.safe_load(spec_file["data"]["run.yaml"])["spec"]["iterations"] == 1

    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    exported = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'mmzero_runs{phase="Succeeded"} 1.0' in exported
    assert 'mmzero_stage_jobs_created_total{retry="false",stage="evaluate"} 1.0' in exported
    assert "mmzero_operator_reconcile_duration_seconds_bucket" in exported


def test_s3_run_waits_for_its_credentials_secret_then_runs_on_minio(
    kube_cluster: Cluster, namespace: str, operator: Operator, minio_server: Any, tmp_path: Path
) -> None:
    minio_server.make_bucket(namespace)
    storage = {"uri": f"s3://{namespace}/runs", "credentials_secret": "store-creds"}
    document = json.loads(_run(namespace))
    document["spec"]["storage"] = storage
    kube_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    run = kube_cluster.wait_for(
        ["mmzerorun", RUN, "-n", namespace],
        lambda obj: any(
            c["type"] == "StoreReachable" and c["status"] == "False"
            for c in (obj.get("status") or {}).get("conditions", [])
        ),
        "StoreReachable=False while the Secret is missing",
    )
    assert "Secret 'store-creds'" in run["status"]["message"]
    assert _jobs(kube_cluster, namespace) == []  # nothing starts without knowing what is done

    secret = ["create", "secret", "generic", "store-creds", "-n", namespace]
    kube_cluster.kubectl(
        *secret, *(f"--from-literal={k}={v}" for k, v in minio_server.env().items())
    )
    store = S3Store(
        f"s3://{namespace}/runs/{RUN}",
        endpoint=minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        root=tmp_path / "mirror",
    )
    seen: list[str] = []
    _drive(kube_cluster, namespace, store, len(STAGES), seen)
    run = _wait_phase(kube_cluster, namespace, "Succeeded")
    assert seen == [s.name for s in STAGES]
    conditions = {c["type"]: c["status"] for c in run["status"]["conditions"]}
    assert conditions["StoreReachable"] == "True"
    pod = _jobs(kube_cluster, namespace)[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert minio_server.secret_key not in json.dumps(run) + json.dumps(pod)


def test_operator_killed_mid_run_resumes_without_duplicates(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    kube_cluster.kubectl("apply", "-f", "-", stdin=_run(namespace))
    seen: list[str] = []
    _drive(kube_cluster, namespace, store, 3, seen)
    operator.kill()  # SIGKILL: no clean-up, kopf's state is whatever was last written
    time.sleep(1)
    operator.start()
    _drive(kube_cluster, namespace, store, len(STAGES), seen)
    _wait_phase(kube_cluster, namespace, "Succeeded")

    names = sorted(j["metadata"]["name"] for j in _jobs(kube_cluster, namespace))
    assert names == sorted(f"{RUN}-{s.name}" for s in STAGES)


def test_suspend_pauses_the_running_stage_and_resume_restarts_it(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    hour_long = {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=_run(namespace, pod_annotations=hour_long))
    job = ["job", f"{RUN}-i1-proposer-grpo", "-n", namespace]
    kube_cluster.wait_for(job, lambda j: j["status"].get("active") == 1, "first stage running")

    patch = ["patch", "mmzerorun", RUN, "-n", namespace, "--type=merge", "-p"]
    kube_cluster.kubectl(*patch, json.dumps({"spec": {"suspend": True}}))
    kube_cluster.wait_for(job, lambda j: j["spec"].get("suspend") is True, "Job suspended")
    _wait_phase(kube_cluster, namespace, "Suspended")

    kube_cluster.kubectl(*patch, json.dumps({"spec": {"suspend": False}}))
    kube_cluster.wait_for(job, lambda j: j["spec"].get("suspend") is False, "Job resumed")
    _wait_phase(kube_cluster, namespace, "Running")
    assert len(_jobs(kube_cluster, namespace)) == 1


def test_deleting_the_run_removes_its_children(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    hour_long = {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=_run(namespace, pod_annotations=hour_long))
    kube_cluster.wait_for(
        ["jobs", "-n", namespace, "-l", f"{LABEL_RUN}={RUN}"],
        lambda got: len(got["items"]) == 1,
        "the first stage's Job",
    )
    kube_cluster.kubectl("delete", "mmzerorun", RUN, "-n", namespace, "--wait=true")
    for kind in ("jobs", "configmaps", "pods"):
        kube_cluster.wait_for(
            [kind, "-n", namespace, "-l", f"{LABEL_RUN}={RUN}"],
            lambda got: got["items"] == [],
            f"{kind} of the deleted run collected",
        )


FAIL = "pod-fail.stage.kwok.x-k8s.io"


def test_stage_that_fails_twice_is_retried_and_the_run_finishes(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    """Every stage's first two attempts fail (kwok fails their pods); the third passes."""
    failing = {f"{FAIL}/exit-code": "1", f"{FAIL}/until-attempt": "2", f"{FAIL}/message": "boom"}
    run = _run(namespace, pod_annotations=failing, pod_retries=0, retry_backoff_seconds=1)
    kube_cluster.kubectl("apply", "-f", "-", stdin=run)
    third = ["job", f"{RUN}-i1-proposer-grpo-a3", "-n", namespace]
    kube_cluster.wait_for(third, lambda job: True, "the third attempt", timeout=90)
    _perform(store, "i1-proposer-grpo")
    names = {j["metadata"]["name"] for j in _jobs(kube_cluster, namespace)}
    assert {f"{RUN}-i1-proposer-grpo", f"{RUN}-i1-proposer-grpo-a2"} <= names
    status = kube_cluster.wait_for(
        ["mmzerorun", RUN, "-n", namespace],
        lambda obj: obj.get("status", {}).get("stagesDone") == 1,
        "the retried stage done",
    )["status"]
    assert status["attempts"]["i1-proposer-grpo"] == 3


def test_stage_that_keeps_failing_fails_the_run_with_the_pod_reason(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    failing = {f"{FAIL}/exit-code": "1", f"{FAIL}/message": "CUDA error: out of memory"}
    run = _run(namespace, pod_annotations=failing, pod_retries=0, retry_backoff_seconds=1,
               stage_attempts=2)  # fmt: skip
    kube_cluster.kubectl("apply", "-f", "-", stdin=run)
    status = _wait_phase(kube_cluster, namespace, "Failed", timeout=90)["status"]
    assert "i1-proposer-grpo failed after 2 attempt(s): BackoffLimitExceeded" in status["message"]
    assert "exited 1 (Error): CUDA error: out of memory" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and f"{RUN}-i1-proposer-grpo-a2" in failed["message"]

    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig),
           "PATH": f"{kube_cluster.bin_dir}:{os.environ['PATH']}"}  # fmt: skip
    line = subprocess.run(
        [sys.executable, "-m", "mmzero_runtime.cli", "status", RUN, "-n", namespace],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert line.startswith(f"{RUN}: Failed, iteration 1, stage i1-proposer-grpo (attempt 2), 0/7")
    assert line.endswith("CUDA error: out of memory (Job demo-i1-proposer-grpo-a2)")


def test_usage_error_exit_two_fails_the_run_without_a_retry(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    failing = {f"{FAIL}/exit-code": "2", f"{FAIL}/message": "error: run.yaml: 1 problem(s)"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=_run(namespace, pod_annotations=failing))
    status = _wait_phase(kube_cluster, namespace, "Failed", timeout=60)["status"]
    assert "PodFailurePolicy" in status["message"] and status["attempts"]["i1-proposer-grpo"] == 1
    assert len(_jobs(kube_cluster, namespace)) == 1


def test_unschedulable_stage_is_reported_as_blocked(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    """16 GPUs in one pod fit no 8-GPU node: the run says why instead of waiting silently."""
    document = json.loads(_run(namespace))
    document["spec"]["resources"] = {"proposer_trainer": {"gpus": 11}}  # 11 + 2 + 3 servers
    kube_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    run = kube_cluster.wait_for(
        ["mmzerorun", RUN, "-n", namespace],
        lambda obj: any(
            c["type"] == "PodsBlocked" and c["status"] == "True"
            for c in obj.get("status", {}).get("conditions", [])
        ),
        "a PodsBlocked condition",
    )
    blocked = next(c for c in run["status"]["conditions"] if c["type"] == "PodsBlocked")
    assert blocked["reason"] == "Unschedulable" and "nvidia.com/gpu" in blocked["message"]


def test_queued_stage_waits_for_admission_then_the_run_proceeds(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    """With spec.cluster.queue, Jobs are made suspended for Kueue; the test admits them as
    Kueue would (unsuspending), and only then do their pods start."""
    kube_cluster.kubectl("apply", "-f", "-", stdin=_run(namespace, queue="gpu-queue"))
    first = ["job", f"{RUN}-i1-proposer-grpo", "-n", namespace]
    job = kube_cluster.wait_for(first, lambda j: True, "the first stage's Job")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    time.sleep(5)  # a few reconciles: the operator leaves admission to the queue
    pods = ["pods", "-n", namespace, "-l", f"{LABEL_RUN}={RUN}"]
    assert kube_cluster.get_json(*first)["spec"]["suspend"] is True
    assert kube_cluster.get_json(*pods)["items"] == []

    admit = ["patch", *first, "--type=merge", "-p", json.dumps({"spec": {"suspend": False}})]
    kube_cluster.kubectl(*admit)
    kube_cluster.wait_for(first, lambda j: j["status"].get("succeeded") == 1, "admitted Job done")
    _perform(store, "i1-proposer-grpo")
    second = ["job", f"{RUN}-i1-propose", "-n", namespace]
    assert kube_cluster.wait_for(second, lambda j: True, "the next stage")["spec"]["suspend"]
