"""The plan is the launch contract: the operator's objects ask for what `mmzero plan` counts and
run the command, shards, nodes and servers the stage names, for every stage kind and layout."""

from __future__ import annotations

from typing import Any

import pytest

from mmzero_operator.manifests import GPU, server_objects, stage_objects
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph import launch
from mmzero_runtime.stages.graph.plan import STAGE_KINDS, Stage, all_stages

CPU = {"gpus": 0, "cpu": "1", "memory": "2Gi", "replicas": 1}
ONE_GPU = {"gpus": 1, "replicas": 1}
GROUPS = ("proposer_trainer", "coder_trainer", "solver_trainer", "coder_server",
          "solver_server", "judge_server", "generation")  # fmt: skip

LAYOUTS = [
    # the reference's one node of 8 GPUs: multi-GPU trainers, 8 one-GPU shards, servers
    pytest.param({}, {}, id="defaults"),
    # no GPU anywhere, one pod each (the tiny profile on a CPU cluster)
    pytest.param(dict.fromkeys(GROUPS, CPU), {}, id="cpu"),
    # one GPU per group, one pod each: no torchrun, no shards
    pytest.param(dict.fromkeys(GROUPS, ONE_GPU), {}, id="single-gpu"),
    # batch stages in 4 shards of 2 GPUs each
    pytest.param({"generation": {"gpus": 2, "replicas": 4}}, {}, id="multi-gpu-sharded"),
    # every trainer over two nodes of 8 GPUs: gang Jobs behind a rendezvous Service
    pytest.param({g: {"gpus": 8, "replicas": 2} for g in GROUPS[:3]}, {}, id="multi-node"),
    # frozen-role servers of several GPUs and replicas, the Coder judged by itself (§13.11)
    pytest.param(
        {"coder_server": {"gpus": 2, "replicas": 3}, "judge_server": {"gpus": 4, "replicas": 1}},
        {"rewards": {"coder": {"judge": "coder_checkpoint"}}},
        id="frozen-role-servers",
    ),
    # the same servers as vLLM Deployments with an export init container
    pytest.param(
        {"solver_server": {"gpus": 2, "replicas": 2}},
        {"cluster": {"server_backend": "vllm"}},
        id="vllm-servers",
    ),
]


def _body(resources: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    document = RunSpec.model_validate({"iterations": 2, "resources": resources, **other})
    return {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": "demo", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": document.model_dump(mode="json"),
    }


def _pods_and_template(obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    pods = obj["spec"].get("parallelism", 1) if obj["kind"] == "Job" else obj["spec"]["replicas"]
    return pods, obj["spec"]["template"]["spec"]


def _requested_gpus(objects: list[dict[str, Any]]) -> int:
    """GPUs the Jobs' pods and the Deployments' replicas ask for, all together."""
    total = 0
    for obj in objects:
        if obj["kind"] not in ("Job", "Deployment"):
            continue
        pods, template = _pods_and_template(obj)
        for container in template["containers"] + template.get("initContainers", []):
            requests = container["resources"]["requests"]
            assert requests.get(GPU) == container["resources"]["limits"].get(GPU)
            total += int(requests.get(GPU, 0)) * pods
    return total


def _objects(body: dict[str, Any]) -> list[tuple[Stage, list[dict[str, Any]]]]:
    spec = RunSpec.model_validate(body["spec"])
    return [
        (stage, stage_objects(body, spec, stage, 1) + server_objects(body, spec, stage))
        for stage in all_stages(spec)
    ]


@pytest.mark.parametrize(("resources", "other"), LAYOUTS)
def test_plan_gpus_equal_what_the_stage_objects_request(
    resources: dict[str, Any], other: dict[str, Any]
) -> None:
    built = _objects(_body(resources, other))
    assert {stage.kind for stage, _ in built} == set(STAGE_KINDS)  # every kind, each layout
    for stage, objects in built:
        assert _requested_gpus(objects) == stage.gpus, stage.name


@pytest.mark.parametrize(("resources", "other"), LAYOUTS)
def test_stage_job_runs_the_stage_command_with_its_shards_nodes_and_servers(
    resources: dict[str, Any], other: dict[str, Any]
) -> None:
    for stage, objects in _objects(_body(resources, other)):
        (job,) = [o for o in objects if o["kind"] == "Job"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        command = container["command"]
        program = command.index(launch.PROGRAM)
        run_dir = command[command.index("--run-dir") + 1]
        assert command[program + 1 :] == [
            *launch.stage_args(stage, "/etc/mmzero/run.yaml", run_dir),
            *launch.shard_args(stage, f"$({launch.SHARD_ENV})"),
        ], stage.name
        assert job["spec"].get("completions", 1) == stage.shards * stage.nodes, stage.name
        torchrun = stage.main.component == "trainer" and (stage.main.gpus > 1 or stage.nodes > 1)
        assert (program > 0) == torchrun, stage.name
        asked = {e["name"] for e in container["env"] if e["name"].startswith("MMZERO_SERVER_")}
        assert asked == {launch.server_env(s.purpose) for s in stage.servers}, stage.name
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        assert len(deployments) == len(stage.servers), stage.name
        services = [o for o in objects if o["kind"] == "Service" and o not in deployments]
        assert sum(o["spec"].get("clusterIP") == "None" for o in services) == (stage.nodes > 1)


def test_a_usage_error_fails_the_job_at_once() -> None:
    ((stage, objects), *_) = _objects(_body({}, {}))
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (rule, *_) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["values"] == [launch.EXIT_USAGE], stage.name
