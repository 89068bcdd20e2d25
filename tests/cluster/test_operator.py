"""The operator as a process against the real API server, kwok nodes running the stage pods.

kwok's pods run no container, so a harness stands in for the stage command: when a stage's Job
appears it writes that stage's manifest to the store the operator reads, as `mmzero stage`
would at its end. Everything else is real: the CRD, kopf, the Job and garbage-collector
controllers, the scheduler placing GPU pods on fake nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster and tests/cluster are put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster
from harness import (
    RUN,
    STAGES,
    Operator,
    drive,
    perform,
    run_document,
    run_jobs,
    wait_phase,
)

from mmzero_operator.crd import CHART_CRD
from mmzero_operator.names import LABEL_RUN
from mmzero_runtime.storage.s3 import S3Store

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def mmzero_status(cluster: Cluster, namespace: str) -> str:
    """`mmzero status RUN -n NAMESPACE`, the one line a user reads."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "PATH": f"{cluster.bin_dir}:{os.environ['PATH']}"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "mmzero_runtime.cli", "status", RUN, "-n", namespace],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def operator(
    kube_cluster: Cluster, namespace: str, store: Path, tmp_path: Path
) -> Iterator[Operator]:
    kube_cluster.install_crd(ROOT / CHART_CRD, "mmzeroruns.mmzero.dev")
    running = Operator(kube_cluster, namespace, store, tmp_path / "operator.log")
    running.start()
    yield running
    running.stop()


def test_run_goes_through_every_stage_in_order_and_succeeds(
    kube_cluster: Cluster,
    namespace: str,
    operator: Operator,
    store: Path,
    start_prometheus: Any,
    tmp_path: Path,
) -> None:
    target = f"127.0.0.1:{operator.metrics_port}"
    prometheus = start_prometheus(tmp_path / "prometheus", {"operator": (target, {})})
    started = time.time()
    kube_cluster.kubectl("apply", "-f", "-", stdin=run_document(namespace))
    seen: list[str] = []
    drive(kube_cluster, namespace, store, len(STAGES), seen)
    run = wait_phase(kube_cluster, namespace, "Succeeded")

    assert seen == [s.name for s in STAGES]
    status = run["status"]
    assert (status["stagesDone"], status["stagesTotal"]) == (7, 7)
    assert status["checkpoints"]["solver"] == "i1/solver-grpo/model"
    assert all(n == 1 for n in status["attempts"].values())
    jobs = run_jobs(kube_cluster, namespace)
    assert len(jobs) == 7  # one Job per stage, no retries
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("MMZeroRun", RUN, True)
    spec_file = kube_cluster.get_json("configmap", f"{RUN}-spec", "-n", namespace)
    assert yaml.safe_load(spec_file["data"]["run.yaml"])["spec"]["iterations"] == 1

    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    exported = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'mmzero_operator_runs{phase="Succeeded"} 1.0' in exported
    created = 'mmzero_operator_stage_jobs_created_total{retry="false",stage="evaluate"} 1.0'
    assert created in exported
    assert "mmzero_operator_reconcile_duration_seconds_bucket" in exported

    time.sleep(3)  # a few more scrapes
    from mmzero_operator.dashboard import PANELS

    operator_panels = [p for p in PANELS if p.from_operator]
    assert len(operator_panels) == 8
    for panel in operator_panels:
        expr = panel.query.replace("$__rate_interval", "10s")
        data = prometheus.query_range(expr, started, time.time(), step="1s")
        assert data["result"], f"panel {panel.title!r}: no data for {expr}"


def test_s3_run_waits_for_its_credentials_secret_then_runs_on_minio(
    kube_cluster: Cluster, namespace: str, operator: Operator, minio_server: Any, tmp_path: Path
) -> None:
    minio_server.make_bucket(namespace)
    storage = {"uri": f"s3://{namespace}/runs", "credentials_secret": "store-creds"}
    document = json.loads(run_document(namespace))
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
    assert run_jobs(kube_cluster, namespace) == []  # nothing starts without knowing what is done

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
    drive(kube_cluster, namespace, store, len(STAGES), seen)
    run = wait_phase(kube_cluster, namespace, "Succeeded")
    assert seen == [s.name for s in STAGES]
    conditions = {c["type"]: c["status"] for c in run["status"]["conditions"]}
    assert conditions["StoreReachable"] == "True"
    pod = run_jobs(kube_cluster, namespace)[0]["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert minio_server.secret_key not in json.dumps(run) + json.dumps(pod)

    kube_cluster.kubectl("delete", "mmzerorun", RUN, "-n", namespace, "--wait=true")
    assert store.exists(f"{STAGES[-1].output}/MANIFEST.json")  # a deleted run keeps its data


def test_operator_killed_mid_run_resumes_without_duplicates(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    kube_cluster.kubectl("apply", "-f", "-", stdin=run_document(namespace))
    seen: list[str] = []
    drive(kube_cluster, namespace, store, 3, seen)
    operator.kill()  # SIGKILL: no clean-up, kopf's state is whatever was last written
    time.sleep(1)
    operator.start()
    drive(kube_cluster, namespace, store, len(STAGES), seen)
    wait_phase(kube_cluster, namespace, "Succeeded")

    names = sorted(j["metadata"]["name"] for j in run_jobs(kube_cluster, namespace))
    assert names == sorted(f"{RUN}-{s.name}" for s in STAGES)


def test_suspend_pauses_the_running_stage_and_resume_restarts_it(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    hour_long = {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}
    kube_cluster.kubectl(
        "apply", "-f", "-", stdin=run_document(namespace, pod_annotations=hour_long)
    )
    job = ["job", f"{RUN}-i1-proposer-grpo", "-n", namespace]
    kube_cluster.wait_for(job, lambda j: j["status"].get("active") == 1, "first stage running")

    patch = ["patch", "mmzerorun", RUN, "-n", namespace, "--type=merge", "-p"]
    kube_cluster.kubectl(*patch, json.dumps({"spec": {"suspend": True}}))
    kube_cluster.wait_for(job, lambda j: j["spec"].get("suspend") is True, "Job suspended")
    wait_phase(kube_cluster, namespace, "Suspended")

    kube_cluster.kubectl(*patch, json.dumps({"spec": {"suspend": False}}))
    kube_cluster.wait_for(job, lambda j: j["spec"].get("suspend") is False, "Job resumed")
    wait_phase(kube_cluster, namespace, "Running")
    assert len(run_jobs(kube_cluster, namespace)) == 1


def test_a_stopping_health_alarm_holds_the_run_until_the_spec_lowers_its_threshold(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    document = json.loads(run_document(namespace))
    document["spec"]["health"] = {"on_alarm": "stop"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    seen: list[str] = []
    drive(kube_cluster, namespace, store, 1, seen)
    kube_cluster.wait_for(["job", f"{RUN}-i1-propose", "-n", namespace], lambda j: True,
                          "the propose Job")  # fmt: skip
    collapsed = {"figures": {"diversity/hard_question_distinct_share": 0.02}, "histograms": {}}
    perform(store, "i1-propose", {"health.json": json.dumps(collapsed).encode()})
    seen.append("i1-propose")
    status = wait_phase(kube_cluster, namespace, "Stopped")["status"]
    assert [(a["name"], a["stage"]) for a in status["alarms"]] == [("collapse", "i1-propose")]
    alarm = next(c for c in status["conditions"] if c["type"] == "HealthAlarm")
    assert (alarm["status"], alarm["reason"]) == ("True", "Collapse")
    time.sleep(3)  # a few reconciles: nothing new starts
    assert len(run_jobs(kube_cluster, namespace)) == 2
    line = mmzero_status(kube_cluster, namespace)
    assert line.startswith(f"{RUN}: Stopped") and "1 alarm(s): collapse" in line

    # spec.health may change in a started run: a lower floor lets it go on
    patch = {"spec": {"health": {"on_alarm": "stop", "min_distinct_share": 0.01}}}
    kube_cluster.kubectl("patch", "mmzerorun", RUN, "-n", namespace, "--type=merge", "-p",
                         json.dumps(patch))  # fmt: skip
    drive(kube_cluster, namespace, store, len(STAGES), seen)
    status = wait_phase(kube_cluster, namespace, "Succeeded")["status"]
    assert status["alarms"] == []


def test_deleting_the_run_removes_its_children_and_asked_to_its_artifacts(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    hour_long = {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}
    document = run_document(namespace, pod_annotations=hour_long, delete_artifacts=True)
    kube_cluster.kubectl("apply", "-f", "-", stdin=document)
    kube_cluster.wait_for(
        ["jobs", "-n", namespace, "-l", f"{LABEL_RUN}={RUN}"],
        lambda got: len(got["items"]) == 1,
        "the first stage's Job",
    )
    perform(store, STAGES[0].name)  # what the run had stored so far
    kube_cluster.kubectl("delete", "mmzerorun", RUN, "-n", namespace, "--wait=true")
    assert not (store / "runs" / RUN).exists()
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
    run = run_document(namespace, pod_annotations=failing, pod_retries=0, retry_backoff_seconds=1)
    kube_cluster.kubectl("apply", "-f", "-", stdin=run)
    third = ["job", f"{RUN}-i1-proposer-grpo-a3", "-n", namespace]
    kube_cluster.wait_for(third, lambda job: True, "the third attempt", timeout=90)
    perform(store, "i1-proposer-grpo")
    names = {j["metadata"]["name"] for j in run_jobs(kube_cluster, namespace)}
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
    run = run_document(namespace, pod_annotations=failing, pod_retries=0, retry_backoff_seconds=1,
               stage_attempts=2)  # fmt: skip
    kube_cluster.kubectl("apply", "-f", "-", stdin=run)
    status = wait_phase(kube_cluster, namespace, "Failed", timeout=90)["status"]
    assert "i1-proposer-grpo failed after 2 attempt(s): BackoffLimitExceeded" in status["message"]
    assert "exited 1 (Error): CUDA error: out of memory" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and f"{RUN}-i1-proposer-grpo-a2" in failed["message"]

    line = mmzero_status(kube_cluster, namespace)
    assert line.startswith(f"{RUN}: Failed, iteration 1, stage i1-proposer-grpo (attempt 2), 0/7")
    assert line.endswith("CUDA error: out of memory (Job demo-i1-proposer-grpo-a2)")


def test_usage_error_exit_two_fails_the_run_without_a_retry(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    failing = {f"{FAIL}/exit-code": "2", f"{FAIL}/message": "error: run.yaml: 1 problem(s)"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=run_document(namespace, pod_annotations=failing))
    status = wait_phase(kube_cluster, namespace, "Failed", timeout=60)["status"]
    assert "PodFailurePolicy" in status["message"] and status["attempts"]["i1-proposer-grpo"] == 1
    assert len(run_jobs(kube_cluster, namespace)) == 1


def test_unschedulable_stage_is_reported_as_blocked(
    kube_cluster: Cluster, namespace: str, operator: Operator
) -> None:
    """16 GPUs in one pod fit no 8-GPU node: the run says why instead of waiting silently."""
    document = json.loads(run_document(namespace))
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
    kube_cluster.kubectl("apply", "-f", "-", stdin=run_document(namespace, queue="gpu-queue"))
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
    perform(store, "i1-proposer-grpo")
    second = ["job", f"{RUN}-i1-propose", "-n", namespace]
    assert kube_cluster.wait_for(second, lambda j: True, "the next stage")["spec"]["suspend"]


def test_a_trainer_on_two_nodes_is_admitted_as_a_gang_with_its_rendezvous_service(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    """A Proposer trainer of two 8-GPU nodes: one indexed Job of two pods, suspended for the
    queue; admitted as one (as Kueue admits a Job's pods together), both pods start on two
    fake nodes with their index's hostname under the headless Service, and the run goes on to
    the propose stage, whose Job has a pod per shard."""
    document = json.loads(run_document(namespace, queue="gpu-queue"))
    document["spec"]["resources"] = {"proposer_trainer": {"gpus": 8, "replicas": 2}}
    kube_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
    name = f"{RUN}-i1-proposer-grpo"
    first = ["job", name, "-n", namespace]
    job = kube_cluster.wait_for(first, lambda j: True, "the trainer's Job")
    assert job["spec"]["suspend"] is True and job["spec"]["completionMode"] == "Indexed"
    service = kube_cluster.get_json("service", name, "-n", namespace)
    assert service["spec"]["clusterIP"] == "None"

    kube_cluster.kubectl("patch", *first, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    pods = ["pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={name}"]
    started = kube_cluster.wait_for(
        pods, lambda got: len(got["items"]) == 2, "both of the gang's pods"
    )
    placed = {p["spec"]["hostname"]: p["spec"].get("subdomain") for p in started["items"]}
    assert placed == {f"{name}-0": name, f"{name}-1": name}
    kube_cluster.wait_for(first, lambda j: j["status"].get("succeeded") == 2, "both indices done")
    perform(store, "i1-proposer-grpo")
    second = ["job", f"{RUN}-i1-propose", "-n", namespace]
    after = kube_cluster.wait_for(second, lambda j: True, "the next stage")["spec"]
    # a batch stage: resources.generation.replicas (8) shards that retry alone
    assert (after["completionMode"], after["completions"], after["parallelism"]) == (
        "Indexed", 8, 8,
    )  # fmt: skip
    assert after["backoffLimitPerIndex"] == 2  # spec.cluster.pod_retries


def test_frozen_roles_are_served_while_their_stage_runs_then_removed(
    kube_cluster: Cluster, namespace: str, operator: Operator, store: Path
) -> None:
    hour_long = {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}
    kube_cluster.kubectl(
        "apply", "-f", "-", stdin=run_document(namespace, pod_annotations=hour_long)
    )
    deployments = ["deployments", "-n", namespace, "-l", f"{LABEL_RUN}={RUN}"]
    names = {"demo-i1pg-coder", "demo-i1pg-solver"}
    served = kube_cluster.wait_for(
        deployments,
        lambda got: (
            {d["metadata"]["name"] for d in got["items"]} == names
            and all(
                d.get("status", {}).get("readyReplicas") == d["spec"]["replicas"]
                for d in got["items"]
            )
        ),
        "both frozen-role servers ready",
    )
    solver = next(d for d in served["items"] if d["metadata"]["name"] == "demo-i1pg-solver")
    assert solver["spec"]["replicas"] == 3
    for kind in ("services", "networkpolicies"):
        made = kube_cluster.get_json(kind, "-n", namespace, "-l", f"{LABEL_RUN}={RUN}")
        assert {s["metadata"]["name"] for s in made["items"]} == names, kind
    job = kube_cluster.get_json("job", f"{RUN}-i1-proposer-grpo", "-n", namespace)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MMZERO_SERVER_CODER", "value": "http://demo-i1pg-coder:8000"} in env

    perform(store, "i1-proposer-grpo")  # the stage finishes: its servers go
    kube_cluster.wait_for(deployments, lambda got: got["items"] == [], "servers removed")
    for kind in ("services", "networkpolicies"):
        kube_cluster.wait_for(
            [kind, "-n", namespace, "-l", f"{LABEL_RUN}={RUN}"],
            lambda got: got["items"] == [],
            f"server {kind} removed",
        )
