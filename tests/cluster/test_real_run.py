"""A real run through the cluster: `kubectl apply` of the example run, and its stage pods really
execute `mmzero stage ...` (and its frozen-role servers `mmzero serve ...`) as processes of a
test node agent, with every artifact in a real MinIO; then `mmzero report` builds the report
from MinIO. Real: the API server, scheduler, Job/Deployment/EndpointSlice controllers, the
operator, MinIO, the served frozen roles. Not real: containers (see node_agent.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster and tests/cluster are put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster
from harness import Operator
from node_agent import AGENT_LABEL, NodeAgent

from mmzero_operator.crd import CHART_CRD
from mmzero_runtime.models.warmstart import init_tiny
from mmzero_runtime.spec import parse_run
from mmzero_runtime.stages.plan import all_stages
from mmzero_runtime.storage.manifest import verify
from mmzero_runtime.storage.s3 import S3Store

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


def test_the_example_run_trains_through_the_cluster_with_artifacts_in_minio(
    kube_cluster: Cluster,
    namespace: str,
    minio_server: Any,
    agent: NodeAgent,
    tmp_path: Path,
) -> None:
    init_tiny()  # cached; the stage processes load builtin:tiny from ~/.cache
    kube_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CHART_CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd/mmzeroruns.mmzero.dev")
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
        "metrics_linger_seconds": 0,
    }
    operator = Operator(kube_cluster, namespace, tmp_path / "unused", tmp_path / "operator.log")
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

    store = S3Store(f"s3://{namespace}/runs/{RUN}", endpoint=minio_server.endpoint,
                    access_key=minio_server.access_key, secret_key=minio_server.secret_key,
                    root=tmp_path / "mirror")  # fmt: skip
    run = parse_run(yaml.safe_load(store.read_bytes("run.yaml")))
    for stage in all_stages(run.spec):
        verify(store, stage.output)  # every stage's files are in MinIO, intact
    names = [pod.name for pod in agent.pods.values()]
    served = {name.rsplit("-", 2)[0] for name in names if "pg-" in name or "cg-" in name}
    assert served == {f"{RUN}-i1pg-coder", f"{RUN}-i1pg-solver", f"{RUN}-i1cg-solver"}, names
    deployments = kube_cluster.get_json("deployments", "-n", namespace)["items"]
    assert deployments == []  # each server went with its stage

    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(document))
    env = {**os.environ, **minio_server.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "mmzero_runtime.cli", "report", str(spec_file)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert store.exists("report.html") and b"MM-Zero run tiny" in store.read_bytes("report.html")
