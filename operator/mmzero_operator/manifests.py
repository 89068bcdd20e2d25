"""The objects a run owns: its spec ConfigMap and one Job per stage attempt.

Names are deterministic (`<run>-spec`, `<run>-<stage>` and `<run>-<stage>-a<N>` for the N-th
attempt), so a restarted operator finds what it made instead of making it again; labels carry
run, iteration, stage and attempt; every object has the run as its controller owner, so the
garbage collector removes them with the run.

A stage attempt is one pod running `mmzero stage`, the same command the local executor runs,
with the GPUs, CPU and memory of its main pod group. The frozen roles a GRPO stage asks (the
previous Coder and Solver) are served while it runs by their own Deployment + Service running
`mmzero serve` on the stage's checkpoint (`<run>-i<N><pg|cg>-<role>`), and the stage pod finds
them through `MMZERO_SERVER_<PURPOSE>` (e.g. `MMZERO_SERVER_SOLVER=http://demo-i1pg-solver:8000`).
"""

from __future__ import annotations

from typing import Any

import yaml

from mmzero_operator.names import (
    JOB_NAME_LABEL,
    LABEL_RUN,
    LABEL_SERVER,
    QUEUE_LABEL,
    job_name,
    labels,
    rendezvous_name,
    server_name,
    spec_config_name,
)
from mmzero_runtime.spec import API_VERSION, KIND, RunSpec
from mmzero_runtime.stages.graph import keys, launch
from mmzero_runtime.stages.graph.plan import PodGroup, Stage

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's dumper when PyYAML has it: a reconcile writes the run file, 4x faster in C."""

METRICS_PORT = 9090
GPU = "nvidia.com/gpu"
SPEC_DIR = "/etc/mmzero"
SERVER_PORT = 8000
VLLM_MODEL_DIR = "/models"
"""Where a vLLM server pod's init container exports the checkpoint it serves."""


def servers(run: str, stage: Stage) -> list[tuple[str, str, PodGroup]]:
    """(name, input purpose, pod group) of each frozen-role server `stage` needs."""
    return [(server_name(run, stage, s.role), s.purpose, s) for s in stage.servers]


def server_env(run: str, stage: Stage) -> list[dict[str, str]]:
    """`MMZERO_SERVER_<PURPOSE>` for each server of `stage`: where its stage pod asks."""
    return [
        {"name": launch.server_env(purpose), "value": f"http://{name}:{SERVER_PORT}"}
        for name, purpose, _ in servers(run, stage)
    ]


def owner(body: dict[str, Any]) -> dict[str, Any]:
    """The controller owner reference to the run."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(body: dict[str, Any], name: str, child_labels: dict[str, str]) -> dict[str, Any]:
    """A child's metadata: its name, the run's namespace, `child_labels` (from `labels`) and
    the run as its controller."""
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": dict(child_labels),
        "ownerReferences": [owner(body)],
    }


def spec_config_map(body: dict[str, Any]) -> dict[str, Any]:
    """The run file every stage pod reads (`/etc/mmzero/run.yaml`): the object as the API
    server defaulted it, without status or server-set metadata."""
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": body["metadata"]["name"]},
        "spec": body["spec"],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            body, spec_config_name(body["metadata"]["name"]), labels(body["metadata"]["name"])
        ),
        "data": {"run.yaml": yaml.dump(document, Dumper=_Dumper, sort_keys=False)},
    }


def _run_dir(spec: RunSpec, run: str) -> str:
    """A pod's run directory: on the shared claim, or (S3) the pod's download mirror."""
    return str(launch.volume_run_dir(spec, run, launch.STORE_MOUNT))


def with_stage_env(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """`job` with `env` (`launch.STAGE_ENV_NAMES` from the operator's own environment: where
    the cluster's shared services are) added to its stage container."""
    if env:
        container = job["spec"]["template"]["spec"]["containers"][0]
        container["env"].extend(
            {"name": name, "value": value} for name, value in sorted(env.items())
        )
    return job


def _pod_spec(
    run: str,
    spec: RunSpec,
    group: PodGroup,
    name: str,
    command: list[str],
    env: list[dict[str, str]],
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    """A pod of `group` running `command` in the run's image: its GPUs, CPU and memory, the
    run file, the store (the shared claim, or for S3 an emptyDir mirror and the credentials
    Secret as environment), no API token."""
    cluster = spec.cluster
    limits: dict[str, str] = {"cpu": group.cpu, "memory": group.memory}
    if group.gpus:
        limits[GPU] = str(group.gpus)
    store: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": cluster.storage_claim}}
        if cluster.storage_claim
        else {"emptyDir": {}}  # S3: the pod's mirror of its inputs and scratch, gone with it
    )
    container = {
        "name": name,
        "image": cluster.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "command": command,
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "store", "mountPath": launch.STORE_MOUNT},
        ],
        "env": env,
        "ports": ports,
        # S3 credentials (and AWS_ENDPOINT_URL) as environment, never in the object's own spec.
        "envFrom": (
            [{"secretRef": {"name": spec.storage.credentials_secret}}]
            if spec.storage.credentials_secret
            else []
        ),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": "spec", "configMap": {"name": spec_config_name(run)}},
            {"name": "store", **store},
        ],
        "automountServiceAccountToken": False,
        # SIGTERM makes a trainer checkpoint after its current update (the stage's preemption
        # path); give it time to write before SIGKILL.
        "terminationGracePeriodSeconds": 300,
    }
    if cluster.service_account:
        pod_spec["serviceAccountName"] = cluster.service_account
    if cluster.node_selector:
        pod_spec["nodeSelector"] = dict(cluster.node_selector)
    if cluster.priority_class:
        pod_spec["priorityClassName"] = cluster.priority_class
    return pod_spec


RENDEZVOUS_PORT = 29400
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def _launcher(stage: Stage, job: str) -> tuple[list[str], list[dict[str, Any]]]:
    """torchrun before `mmzero stage` for a trainer of several GPUs or nodes (one process per
    GPU), and its environment; across nodes, a static rendezvous at the pod of index 0 with
    each pod's node rank from its completion index (Kubeflow Trainer's torch layout)."""
    group = stage.main
    if group.component != "trainer" or (group.gpus <= 1 and stage.nodes == 1):
        return [], []
    per_node = f"--nproc-per-node={max(group.gpus, 1)}"
    if stage.nodes == 1:
        return ["torchrun", "--standalone", per_node, "--no-python"], []
    launcher = [
        "torchrun", f"--nnodes={stage.nodes}", per_node, f"--node-rank=$({launch.NODE_RANK_ENV})",
        f"--master-addr={job}-0.{rendezvous_name(job)}", f"--master-port={RENDEZVOUS_PORT}",
        "--no-python",
    ]  # fmt: skip
    return launcher, [{"name": launch.NODE_RANK_ENV, "valueFrom": _completion_index()}]


def _completion_index() -> dict[str, Any]:
    """An indexed Job pod's index, as an environment variable's source."""
    return {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}


def stage_objects(
    body: dict[str, Any], spec: RunSpec, stage: Stage, attempt: int
) -> list[dict[str, Any]]:
    """What one attempt of `stage` creates: its Job, after the headless Service of a trainer
    that spans nodes (owned by the run, like the Job; one per attempt, as the pods' DNS)."""
    job = stage_job(body, spec, stage, attempt)
    if stage.nodes == 1:
        return [job]
    name = job["metadata"]["name"]
    service_labels = labels(body["metadata"]["name"], stage, attempt=attempt)  # no queue label
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(body, rendezvous_name(name), service_labels),
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: name},
            "publishNotReadyAddresses": True,  # DNS before the pods pass any readiness
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }
    return [service, job]


def stage_job(body: dict[str, Any], spec: RunSpec, stage: Stage, attempt: int) -> dict[str, Any]:
    """The Job of one attempt of `stage`: one pod; for a trainer of `replicas` nodes an
    indexed Job of that many pods (admitted by Kueue as one workload, so as a gang); for a
    sharded batch stage an indexed Job of one pod per shard."""
    run = body["metadata"]["name"]
    cluster = spec.cluster
    name = job_name(run, stage, attempt)
    job_labels = labels(run, stage, attempt=attempt)  # the Job's and its pods'
    launcher, launcher_env = _launcher(stage, name)
    command = [
        *launcher, launch.PROGRAM, *launch.stage_args(stage, f"{SPEC_DIR}/run.yaml",
                                                      _run_dir(spec, run)),
        # each pod one block of the items; the last to finish merges
        *launch.shard_args(stage, f"$({launch.SHARD_ENV})"),
    ]  # fmt: skip
    if stage.shards > 1:
        launcher_env = [{"name": launch.SHARD_ENV, "valueFrom": _completion_index()}]
    # The stage's Prometheus metrics; the chart's PodMonitor scrapes this port and adds the
    # run, iteration and stage labels from the pod's.
    env = [
        {"name": launch.METRICS_ADDRESS_ENV, "value": "0.0.0.0"},
        {"name": launch.METRICS_PORT_ENV, "value": str(METRICS_PORT)},
        {"name": launch.METRICS_LINGER_ENV, "value": str(cluster.metrics_linger_seconds)},
        *server_env(run, stage),
        *launcher_env,
    ]
    ports = [{"name": "metrics", "containerPort": METRICS_PORT}]
    if stage.nodes > 1:
        ports.append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT})
    pod_spec = _pod_spec(run, spec, stage.main, "stage", command, env, ports)
    pod_spec["restartPolicy"] = "Never"
    metadata = _metadata(body, name, job_labels)
    if cluster.queue:
        metadata["labels"][QUEUE_LABEL] = cluster.queue
    rules: list[dict[str, Any]] = [
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": "stage",
                "operator": "In",
                "values": [launch.EXIT_USAGE],
            },
        }
    ]
    job_spec: dict[str, Any] = {
        "backoffLimit": cluster.pod_retries,
        "activeDeadlineSeconds": cluster.stage_deadline_seconds,
        "suspend": bool(cluster.queue),  # Kueue unsuspends it on admission
    }
    if stage.nodes > 1:
        # One lost pod leaves the others blocked in a collective: the first failure (a
        # preemption included) fails the whole attempt, and the stage retries as a new one.
        job_spec.update(backoffLimit=0, completionMode="Indexed",
                        completions=stage.nodes, parallelism=stage.nodes)  # fmt: skip
        pod_spec["subdomain"] = rendezvous_name(name)
    elif stage.shards > 1:
        # Each shard retries alone; the others keep their finished blocks.
        job_spec.pop("backoffLimit")
        job_spec.update(completionMode="Indexed", completions=stage.shards,
                        parallelism=stage.shards,
                        backoffLimitPerIndex=cluster.pod_retries)  # fmt: skip
        rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]})
    else:
        rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]})
    job_spec["podFailurePolicy"] = {"rules": rules}
    job_spec["template"] = {
        "metadata": {
            "labels": dict(job_labels),
            "annotations": dict(cluster.pod_annotations),
        },
        "spec": pod_spec,
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def _longest_response(spec: RunSpec) -> int:
    """The most tokens any stage asks a served role for in one response."""
    data, roles = spec.data, spec.roles
    samplings = (data.propose_sampling, data.code_sampling, data.coder_service_sampling,
                 data.solver_service_sampling, spec.evaluation.sampling)  # fmt: skip
    responses = (roles.proposer, roles.coder, roles.solver)
    return max([s.max_tokens for s in samplings] + [r.max_response_tokens for r in responses])


def _serve_with_vllm(
    pod_spec: dict[str, Any], spec: RunSpec, group: PodGroup, max_prompt_tokens: int, run_dir: str
) -> None:
    """Turn a `mmzero serve` pod into `vllm serve`: an init container exports the checkpoint
    (checked against its manifest) and its digest into an emptyDir, and vLLM serves that
    directory under the digest as its model name, which the stages' client checks."""
    (server,) = pod_spec["containers"]
    key = group.models[0]
    command = [
        launch.PROGRAM, "export", f"{VLLM_MODEL_DIR}/model", "--spec", f"{SPEC_DIR}/run.yaml",
        "--role", group.role, "--iteration", str(keys.checkpoint_iteration(key)),
        "--run-dir", run_dir,
        "--digest-file", f"{VLLM_MODEL_DIR}/digest",
    ]  # fmt: skip
    export = {
        **server,
        "name": "export",
        "command": command,
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "ports": [],
    }
    serve = (
        f"exec vllm serve {VLLM_MODEL_DIR}/model"
        f' --served-model-name "$(cat {VLLM_MODEL_DIR}/digest)"'
        f" --host 0.0.0.0 --port {SERVER_PORT} --seed {spec.seed}"
        f" --max-model-len {max_prompt_tokens + _longest_response(spec)}"
        f" --tensor-parallel-size {max(group.gpus, 1)}"
    )
    mount = {"name": "model", "mountPath": VLLM_MODEL_DIR}
    export["volumeMounts"] = [*server["volumeMounts"], mount]
    server["command"] = ["sh", "-c", serve]
    server["volumeMounts"] = [*server["volumeMounts"], {**mount, "readOnly": True}]
    pod_spec["initContainers"] = [export]
    pod_spec["volumes"].append({"name": "model", "emptyDir": {}})


def server_objects(body: dict[str, Any], spec: RunSpec, stage: Stage) -> list[dict[str, Any]]:
    """A Deployment and a Service per frozen-role server of `stage`: `mmzero serve` on the
    stage's checkpoint of that role, ready when its model is loaded (`/health`)."""
    run = body["metadata"]["name"]
    objects = []
    for name, _, group in servers(run, stage):
        server_labels = labels(run, stage, server=name)
        role = getattr(spec.roles, group.role)
        run_dir = _run_dir(spec, run)
        command = [
            launch.PROGRAM, "serve", "--spec", f"{SPEC_DIR}/run.yaml", "--key", group.models[0],
            "--run-dir", run_dir, "--host", "0.0.0.0", "--port", str(SERVER_PORT),
            # the prompt limit the stage would apply in-process, so both ways agree
            "--max-prompt-tokens", str(role.max_prompt_tokens),
            "--max-tokens", str(_longest_response(spec)), "--device", "auto",
        ]  # fmt: skip
        ports = [{"name": "http", "containerPort": SERVER_PORT}]
        pod_spec = _pod_spec(run, spec, group, "server", command, [], ports)
        if spec.cluster.server_backend == "vllm":
            _serve_with_vllm(pod_spec, spec, group, role.max_prompt_tokens, run_dir)
        pod_spec["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/health", "port": "http"},  # both servers answer it
            "periodSeconds": 10,
        }
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _metadata(body, name, server_labels),
                "spec": {
                    "replicas": group.replicas,
                    "selector": {"matchLabels": {LABEL_SERVER: name}},
                    "template": {
                        "metadata": {
                            "labels": server_labels,
                            "annotations": dict(spec.cluster.pod_annotations),
                        },
                        "spec": pod_spec,
                    },
                },
            }
        )
        # Only the run's own pods may ask the server (enforced by CNIs with NetworkPolicy).
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _metadata(body, name, server_labels),
                "spec": {
                    "podSelector": {"matchLabels": {LABEL_SERVER: name}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {LABEL_RUN: run}}}],
                            "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
                        }
                    ],
                },
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _metadata(body, name, server_labels),
                "spec": {
                    "selector": {LABEL_SERVER: name},
                    "ports": [{"name": "http", "port": SERVER_PORT, "targetPort": "http"}],
                },
            }
        )
    return objects
