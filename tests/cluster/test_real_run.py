"""A real run through the cluster: `kubectl apply` of the example run, and its stage pods really
execute `mmzero stage ...` (and its frozen-role servers `mmzero serve ...`, and the chart's
render service `mmzero serve --render`) as processes of a test node agent, with every artifact
in a real MinIO, while a real Prometheus discovers the stage pods through the API server and
scrapes them with the chart's PodMonitor relabelling; then `mmzero report` builds the report
from MinIO. Real: the API server, scheduler, Job/Deployment/EndpointSlice controllers, the
operator (with the chart's environment), MinIO, the served frozen roles, the render service,
Prometheus. Not real: containers (see node_agent.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster and tests/cluster are put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster
from harness import Operator, chart_manifests
from node_agent import AGENT_LABEL, NodeAgent

from mmzero_operator.crd import CHART_CRD
from mmzero_runtime.spec import parse_run
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.storage.manifest import verify
from mmzero_runtime.storage.s3 import S3Store
from mmzero_runtime.warmstart.build import init_tiny

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
RUN = "tiny"


@pytest.fixture
def agent(kube_cluster: Cluster, tmp_path: Path) -> Iterator[NodeAgent]:
    running = NodeAgent(kube_cluster.kubeconfig, "agent-0", tmp_path / "agent",
                        Path(sys.executable).parent)  # fmt: skip
    running.start()
    yield running
    running.stop()


def _label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _pod_scrape_job(pod_monitor: dict[str, Any], targets: Path) -> dict[str, Any]:
    """The chart's PodMonitor as the Prometheus Operator turns it into a scrape job: keep by
    the selector and port name, then the PodMonitor's relabelling; the pods come from
    `_PodDiscovery` (Debian's Prometheus is built without Kubernetes discovery)."""
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    keep = [
        {"source_labels": [f"__meta_kubernetes_pod_label_{_label(k)}"], "regex": v,
         "action": "keep"}
        for k, v in pod_monitor["spec"]["selector"]["matchLabels"].items()
    ]  # fmt: skip
    keep.append({"source_labels": ["__meta_kubernetes_pod_container_port_name"],
                 "regex": endpoint["port"], "action": "keep"})  # fmt: skip
    relabel = [
        {"source_labels": r["sourceLabels"], "target_label": r["targetLabel"]}
        for r in endpoint["relabelings"]
    ]
    return {"job_name": "stages", "scrape_interval": "1s",
            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
            "relabel_configs": keep + relabel}  # fmt: skip


class _PodDiscovery:
    """What Prometheus's Kubernetes pod discovery yields, from the API server every second:
    one target per pod IP and container port, with the `__meta_kubernetes_pod_*` labels."""

    def __init__(self, kubeconfig: Path, namespace: str, targets: Path) -> None:
        from kubernetes import client, config

        self.core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        self.namespace, self.targets = namespace, targets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._write([])

    def _write(self, entries: list[dict[str, Any]]) -> None:
        partial = self.targets.with_suffix(".tmp")
        partial.write_text(json.dumps(entries))
        partial.replace(self.targets)

    def _loop(self) -> None:
        while not self._stop.wait(1):
            entries = []
            with contextlib.suppress(Exception):  # a failed list is retried next second
                for pod in self.core.list_namespaced_pod(self.namespace).items:
                    if not pod.status.pod_ip:
                        continue
                    labels = {f"__meta_kubernetes_pod_label_{_label(k)}": v
                              for k, v in (pod.metadata.labels or {}).items()}  # fmt: skip
                    for container in pod.spec.containers:
                        for port in container.ports or []:
                            entries.append({
                                "targets": [f"{pod.status.pod_ip}:{port.container_port}"],
                                "labels": {**labels, "__meta_kubernetes_pod_name":
                                           pod.metadata.name,
                                           "__meta_kubernetes_pod_container_port_name":
                                           port.name or ""},
                            })  # fmt: skip
                self._write(entries)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_the_example_run_trains_through_the_cluster_with_artifacts_in_minio(
    kube_cluster: Cluster,
    namespace: str,
    minio_server: Any,
    agent: NodeAgent,
    helm: Path,
    start_prometheus: Any,
    tmp_path: Path,
) -> None:
    init_tiny()  # cached; the stage processes load builtin:tiny from ~/.cache
    chart = chart_manifests(helm, namespace, f"operator.watchNamespaces={{{namespace}}}",
                            "render.replicas=1", "metrics.serviceMonitor.enabled=true")  # fmt: skip
    render = [d for d in chart if d["metadata"]["name"] == "r-mmzero-render"]
    for doc in render:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["nodeSelector"] = {AGENT_LABEL: "true"}
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(render))
    operator_deployment = next(d for d in chart if d["metadata"]["name"] == "r-mmzero-operator"
                               and d["kind"] == "Deployment")  # fmt: skip
    (container,) = operator_deployment["spec"]["template"]["spec"]["containers"]
    operator_env = {e["name"]: e["value"] for e in container["env"]}
    pod_monitor = next(d for d in chart if d["kind"] == "PodMonitor")
    kube_cluster.install_crd(ROOT / CHART_CRD, "mmzeroruns.mmzero.dev")
    minio_server.make_bucket(namespace)
    secret = ["create", "secret", "generic", "store-creds", "-n", namespace]
    kube_cluster.kubectl(
        *secret, *(f"--from-literal={k}={v}" for k, v in minio_server.env().items())
    )

    document = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())
    document["metadata"] = {"name": RUN, "namespace": namespace}
    document["spec"]["storage"] = {
        "uri": f"s3://{namespace}/runs",
        "credentials_secret": "store-creds",
    }
    document["spec"]["cluster"] = {
        "node_selector": {AGENT_LABEL: "true"},
        "metrics_linger_seconds": 2,  # two scrapes of each stage's final figures
    }
    operator = Operator(kube_cluster, namespace, tmp_path / "unused", tmp_path / "operator.log",
                        env={**operator_env, "MMZERO_RECONCILE_SECONDS": "2"})  # fmt: skip
    discovery = _PodDiscovery(kube_cluster.kubeconfig, namespace, tmp_path / "pods.json")
    prometheus = start_prometheus(
        tmp_path / "prometheus",
        {"operator": (f"127.0.0.1:{operator.metrics_port}", {})},
        [_pod_scrape_job(pod_monitor, tmp_path / "pods.json")],
    )
    started = time.time()
    discovery.start()
    operator.start()
    try:
        kube_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(document))
        try:
            kube_cluster.wait_for(
                ["mmzerorun", RUN, "-n", namespace],
                lambda obj: (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
                "the run to finish", timeout=2000,
            )  # fmt: skip
        finally:
            status = kube_cluster.get_json("mmzerorun", RUN, "-n", namespace).get("status")
        assert status["phase"] == "Succeeded", (
            f"{status}\n{(tmp_path / 'operator.log').read_text()[-3000:]}\n"
            + "\n".join(
                f"--- {p.name}\n{agent.log_of(p.name)[-2000:]}" for p in agent.pods.values()
            )
        )
    finally:
        operator.stop()
        discovery.stop()
    ended = time.time()

    # Every dashboard panel's query parses; all but the GPU one have data from this run, the
    # stage series labelled by the PodMonitor's relabelling from the pods' labels.
    from mmzero_operator.dashboard import PANELS

    for panel in PANELS:
        expr = panel.query.replace("$__rate_interval", "10s")
        data = prometheus.query_range(expr, started, ended)
        if "GPU" not in panel.title:
            assert data["result"], f"panel {panel.title!r}: no data for {expr}"
    steps = prometheus.query_range(
        f'max(mmzero_grpo_steps_total{{run="{RUN}",iteration="1",stage="solver-grpo"}})',
        started, ended,
    )["result"]  # fmt: skip
    assert max(float(v) for _, v in steps[0]["values"]) >= 1
    render_pod = next(p.name for p in agent.pods.values() if p.name.startswith("r-mmzero-render"))
    assert "rendered batch" in agent.log_of(render_pod)  # the stages rendered through it
    stage_pod = next(p.name for p in agent.pods.values() if "coder-data" in p.name)
    assert "rendering through the render service" in agent.log_of(stage_pod)

    store = S3Store(f"s3://{namespace}/runs/{RUN}", endpoint=minio_server.endpoint,
                    access_key=minio_server.access_key, secret_key=minio_server.secret_key,
                    root=tmp_path / "mirror")  # fmt: skip
    run = parse_run(yaml.safe_load(store.read_bytes("run.yaml")))
    for stage in all_stages(run.spec):
        verify(store, stage.output)  # every stage's files are in MinIO, intact
        log = store.read_bytes(f"logs/{stage.name}.log")  # each pod kept its log there
        assert b"stage done stage=" + stage.name.encode() in log, stage.name
    names = [pod.name for pod in agent.pods.values()]
    served = {name.rsplit("-", 2)[0] for name in names if "pg-" in name or "cg-" in name}
    assert served == {f"{RUN}-i1pg-coder", f"{RUN}-i1pg-solver", f"{RUN}-i1cg-solver"}, names
    deployments = kube_cluster.get_json("deployments", "-n", namespace)["items"]
    assert [d["metadata"]["name"] for d in deployments] == ["r-mmzero-render"]  # servers: gone

    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(document))
    env = {**os.environ, **minio_server.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "mmzero_runtime.cli", "report", str(spec_file)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert store.exists("report.html") and b"MM-Zero run tiny" in store.read_bytes("report.html")
