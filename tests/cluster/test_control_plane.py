"""What the operator's cluster tests rely on from hack/cluster: an API server, fake GPU nodes, the
Job and garbage-collector controllers, a scheduler, kwok's pod lifecycle and CRDs with a status
subresource. Driven through the kubectl built with the control plane, so no client library.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

# hack/cluster is put on sys.path by tests/cluster/conftest.py.
from cluster import FAKE_NODE_LABEL, GPU_RESOURCE, Cluster, has_condition

pytestmark = pytest.mark.cluster


def _job(name: str, annotations: dict[str, str] | None = None) -> str:
    container = {
        "name": "main",
        "image": "example.invalid/never-pulled:0",  # kwok nodes run no containers
        "resources": {"limits": {GPU_RESOURCE: "1"}},
    }
    template = {
        "metadata": {"annotations": annotations or {}},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": template},
    }
    return json.dumps(job)


def test_fake_nodes_ready_with_eight_gpus_allocatable(kube_cluster: Cluster) -> None:
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    nodes = kube_cluster.get_json("nodes", "-l", FAKE_NODE_LABEL)["items"]

    assert version["serverVersion"]["minor"] == version["clientVersion"]["minor"]
    assert len(nodes) == 3
    for node in nodes:
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8", node["metadata"]["name"]
        assert has_condition(node, "Ready"), node["metadata"]["name"]


def test_gpu_job_scheduled_on_fake_node_completes(kube_cluster: Cluster, namespace: str) -> None:
    kube_cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=_job("train"))

    job = kube_cluster.wait_for(
        ["job", "train", "-n", namespace],
        lambda job: has_condition(job, "Complete"),
        "Job train to complete",
    )
    pods = kube_cluster.get_json("pods", "-n", namespace, "-l", "job-name=train")["items"]

    assert job["status"]["succeeded"] == 1
    assert [pod["status"]["phase"] for pod in pods] == ["Succeeded"]
    assert pods[0]["spec"]["nodeName"].startswith("kwok-gpu-")


def test_job_deleted_in_background_has_its_pods_collected(
    kube_cluster: Cluster, namespace: str
) -> None:
    # The delay keeps the pod Running, so the garbage collector must delete a live pod.
    running_for_an_hour = {"pod-complete.stage.kwok.x-k8s.io/delay": "1h"}
    kube_cluster.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=_job("sleeper", running_for_an_hour)
    )
    pods = ["pods", "-n", namespace, "-l", "job-name=sleeper"]
    kube_cluster.wait_for(
        pods,
        lambda got: [p["status"].get("phase") for p in got["items"]] == ["Running"],
        "the sleeper pod to run",
    )

    kube_cluster.kubectl("delete", "job", "sleeper", "-n", namespace, "--cascade=background")

    kube_cluster.wait_for(pods, lambda got: not got["items"], "the garbage collector")


def test_namespace_deleted_with_contents_goes_away(kube_cluster: Cluster) -> None:
    name = "doomed"
    kube_cluster.kubectl("create", "namespace", name)
    kube_cluster.kubectl("create", "configmap", "c", "-n", name, "--from-literal=k=v")

    kube_cluster.kubectl("delete", "namespace", name, "--wait=false")

    kube_cluster.wait_for(
        ["namespaces", "--field-selector", f"metadata.name={name}"],
        lambda got: not got["items"],
        "the namespace controller to finish deleting namespace doomed",
    )


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.mmzero.dev"},
    "spec": {
        "group": "test.mmzero.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def widget_crd(kube_cluster: Cluster) -> Iterator[str]:
    name = CRD["metadata"]["name"]
    kube_cluster.kubectl("create", "-f", "-", stdin=json.dumps(CRD))
    kube_cluster.wait_for(["crd", name], lambda crd: has_condition(crd, "Established"), "the CRD")
    yield name
    kube_cluster.kubectl("delete", "crd", name, "--wait=false")


def test_custom_resource_status_set_only_through_subresource(
    kube_cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    widget = {"apiVersion": "test.mmzero.dev/v1", "kind": "Widget", "metadata": {"name": "w"}}
    widget |= {"spec": {"size": 2}, "status": {"phase": "IgnoredOnCreate"}}
    invalid = widget | {"metadata": {"name": "bad"}, "spec": {"size": 0}}
    kube_cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(widget))
    created = kube_cluster.get_json("widget", "w", "-n", namespace)

    rejected = kube_cluster.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=json.dumps(invalid), check=False
    )
    status_patch = json.dumps({"status": {"phase": "Ready"}})
    kube_cluster.kubectl(
        "patch", "widget", "w", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", status_patch,
    )  # fmt: skip
    got = kube_cluster.get_json("widget", "w", "-n", namespace)

    assert "status" not in created
    assert rejected.returncode != 0 and "spec.size" in rejected.stderr
    assert got["spec"] == {"size": 2}
    assert got["status"] == {"phase": "Ready"}
