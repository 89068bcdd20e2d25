"""The Helm chart: lint and schema, its manifests accepted by the real API server, and the
operator running a run with exactly the RBAC the chart grants (a ServiceAccount token)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster and tests/cluster are put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster
from harness import (
    CHART,
    RUN,
    STAGES,
    Operator,
    chart_manifests,
    drive,
    run_document,
    run_helm,
    run_jobs,
    wait_phase,
)

from mmzero_operator.crd import CHART_CRD
from mmzero_operator.dashboard import CHART_DASHBOARD

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def test_chart_lints_and_its_schema_names_a_bad_value(helm: Path) -> None:
    run_helm(helm, "lint", str(CHART), "--strict")
    bad = run_helm(helm, "lint", str(CHART), "--set", "operator.workers=0", check=False)
    assert bad.returncode != 0 and "/operator/workers" in bad.stdout + bad.stderr
    unknown = run_helm(helm, "lint", str(CHART), "--set", "operator.replicas=2", check=False)
    assert unknown.returncode != 0 and "replicas" in unknown.stdout + unknown.stderr


def test_rendered_manifests_follow_the_values(helm: Path) -> None:
    docs = chart_manifests(helm, "mmz")
    cluster_wide = {d["kind"]: d for d in docs}
    assert "ClusterRole" in cluster_wide and "ServiceMonitor" not in cluster_wide
    named = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    deployment = named["r-mmzero-operator"]["spec"]
    assert (deployment["replicas"], deployment["strategy"]["type"]) == (1, "Recreate")
    container = deployment["template"]["spec"]["containers"][0]
    assert "--all-namespaces" in container["command"]
    assert container["image"] == "mmzero/operator:0.1.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MMZERO_RENDER_URL"] == "http://r-mmzero-render.mmz.svc:8001"
    render = named["r-mmzero-render"]["spec"]["template"]["spec"]
    assert render["automountServiceAccountToken"] is False
    assert render["securityContext"]["runAsNonRoot"] is True
    (sandbox,) = render["containers"]
    assert sandbox["securityContext"]["readOnlyRootFilesystem"] is True
    assert sandbox["command"][:3] == ["mmzero", "serve", "--render"]
    assert set(sandbox["resources"]["limits"]) == {"cpu", "memory"}  # and no GPU
    policy = cluster_wide["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    dashboard = cluster_wide["ConfigMap"]["data"]["mmzero.json"]
    assert json.loads(dashboard) == json.loads((ROOT / CHART_DASHBOARD).read_text())

    scoped = chart_manifests(helm, "mmz", "operator.watchNamespaces={a,b}", "minio.enabled=true")
    kinds = [d["kind"] for d in scoped]
    assert "ClusterRole" not in kinds
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in scoped
             if d["kind"] == "Role"}  # fmt: skip
    assert roles == {("a", "r-mmzero-operator"), ("b", "r-mmzero-operator"),
                     ("mmz", "r-mmzero-operator-render")}  # fmt: skip
    render_role = next(d for d in scoped if d["metadata"]["name"] == "r-mmzero-operator-render")
    assert render_role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    secret = next(d for d in scoped if d["kind"] == "Secret")
    assert sorted(secret["data"]) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_ENDPOINT_URL",
        "AWS_SECRET_ACCESS_KEY",
    ]
    endpoint = base64.b64decode(secret["data"]["AWS_ENDPOINT_URL"]).decode()
    assert endpoint == "http://r-mmzero-minio.mmz.svc:9000"
    assert "MMZERO_PUSHGATEWAY_URL" not in env  # off by default

    def pushes_to(docs: list[dict[str, Any]]) -> str:
        deployment = next(
            d for d in docs if d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]
        )
        (operator,) = deployment["spec"]["template"]["spec"]["containers"]
        return next(e["value"] for e in operator["env"] if e["name"] == "MMZERO_PUSHGATEWAY_URL")

    bundled = chart_manifests(helm, "mmz", "metrics.pushgateway.enabled=true",
                        "metrics.serviceMonitor.enabled=true")  # fmt: skip
    assert pushes_to(bundled) == "http://r-mmzero-pushgateway.mmz.svc:9091"
    monitors = {d["metadata"]["name"]: d for d in bundled if d["kind"] == "ServiceMonitor"}
    assert monitors["r-mmzero-pushgateway"]["spec"]["endpoints"][0]["honorLabels"] is True
    theirs = chart_manifests(helm, "mmz", "metrics.pushgateway.url=http://pg.monitoring:9091")
    assert pushes_to(theirs) == "http://pg.monitoring:9091"
    assert not any("pushgateway" in d["metadata"]["name"] for d in theirs)


def test_the_api_server_accepts_every_rendered_manifest(
    helm: Path, kube_cluster: Cluster, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CHART_CRD))
    everything = [f"operator.watchNamespaces={{{namespace}}}", "minio.enabled=true",
                  "metrics.pushgateway.enabled=true"]  # fmt: skip
    for values in ([], everything):
        docs = chart_manifests(helm, namespace, *values)
        manifest = yaml.safe_dump_all(docs)
        kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)


def _token_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_runs_a_run_with_only_the_charts_rbac(
    helm: Path, kube_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    kube_cluster.install_crd(ROOT / CHART_CRD, "mmzeroruns.mmzero.dev")
    docs = chart_manifests(helm, namespace, f"operator.watchNamespaces={{{namespace}}}")
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    account = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    who = f"--as=system:serviceaccount:{namespace}:{account}"
    for verb, resource in (("delete", "jobs"), ("list", "secrets"), ("create", "pods")):
        answer = kube_cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, who,
                                      check=False).stdout.strip()  # fmt: skip
        assert answer == "no", f"the operator may {verb} {resource}"

    store = tmp_path / "store"
    kubeconfig = _token_kubeconfig(kube_cluster, namespace, account, tmp_path / "sa.kubeconfig")
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    operator_env = {e["name"]: e["value"] for e in container["env"]}
    operator = Operator(kube_cluster, namespace, store, tmp_path / "operator.log", kubeconfig,
                        env=operator_env)  # fmt: skip
    operator.start()
    try:
        kube_cluster.kubectl("apply", "-f", "-", stdin=run_document(namespace))
        seen: list[str] = []
        drive(kube_cluster, namespace, store, len(STAGES), seen)
        status = wait_phase(kube_cluster, namespace, "Succeeded")["status"]
    finally:
        operator.stop()
    # the chart's Role lets the operator read the render service's pods (none run here)
    render = next(c for c in status["conditions"] if c["type"] == "RenderReady")
    assert (render["status"], render["reason"]) == ("True", "Ready")
    for job in run_jobs(kube_cluster, namespace):  # stage pods render through the service
        stage_env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {
            "name": "MMZERO_RENDER_URL",
            "value": operator_env["MMZERO_RENDER_URL"],
        } in stage_env
    log = (tmp_path / "operator.log").read_text()
    assert "forbidden" not in log.lower(), log[-3000:]


def test_helm_upgrade_and_uninstall_leave_a_running_run_running(
    helm: Path, kube_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """`helm upgrade` replaces the operator (Recreate) while a stage runs: the stage's Job is
    not touched, the new operator adopts it and finishes the run; `helm uninstall` keeps the
    CRD and the runs (the CRD ships in crds/, which helm never deletes)."""
    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)}
    release = ["-n", namespace]

    def helm_do(*args: str) -> None:
        result = subprocess.run([str(helm), *args, *release], capture_output=True, text=True,
                                env=env, check=False)  # fmt: skip
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stdout}{result.stderr}"

    def operator_env() -> dict[str, str]:
        deployment = kube_cluster.get_json("deployment", "r-mmzero-operator", *release)
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e["value"] for e in container["env"]}

    helm_do("install", "r", str(CHART), f"--set=operator.watchNamespaces={{{namespace}}}")
    store = tmp_path / "store"
    first = Operator(kube_cluster, namespace, store, tmp_path / "first.log", env=operator_env())
    first.start()
    try:
        kube_cluster.kubectl("apply", "-f", "-", stdin=run_document(namespace))
        seen: list[str] = []
        drive(kube_cluster, namespace, store, 2, seen)
        before = {
            j["metadata"]["name"]: j["metadata"]["uid"] for j in run_jobs(kube_cluster, namespace)
        }
    finally:
        first.stop()  # Recreate: the old operator stops before the new one starts

    helm_do("upgrade", "r", str(CHART), "--reuse-values", "--set=operator.reconcileSeconds=5",
            "--set=operator.image.tag=0.1.1")  # fmt: skip
    upgraded = operator_env()
    assert upgraded["MMZERO_RECONCILE_SECONDS"] == "5"
    after = {j["metadata"]["name"]: j["metadata"]["uid"] for j in run_jobs(kube_cluster, namespace)}
    assert after == before  # the upgrade touched no stage Job
    second = Operator(kube_cluster, namespace, store, tmp_path / "second.log", env=upgraded)
    second.start()
    try:
        drive(kube_cluster, namespace, store, len(STAGES), seen)
        wait_phase(kube_cluster, namespace, "Succeeded")
    finally:
        second.stop()
    jobs = run_jobs(kube_cluster, namespace)
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"{RUN}-{s.name}" for s in STAGES)
    uids = {j["metadata"]["name"]: j["metadata"]["uid"] for j in jobs}
    assert all(uids[name] == uid for name, uid in before.items())  # the same objects

    helm_do("uninstall", "r", "--wait")
    kube_cluster.kubectl("get", "crd", "mmzeroruns.mmzero.dev")
    assert wait_phase(kube_cluster, namespace, "Succeeded")  # the run is still there
