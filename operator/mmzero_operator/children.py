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

from mmzero_runtime.spec import API_VERSION, KIND, RunSpec
from mmzero_runtime.stages import keys
from mmzero_runtime.stages.plan import SHARDED_KINDS, PodGroup, Stage

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's dumper when PyYAML has it: a reconcile writes the run file, 4x faster in C."""

LABEL_RUN = "mmzero.dev/run"
LABEL_ITERATION = "mmzero.dev/iteration"
LABEL_STAGE = "mmzero.dev/stage"
LABEL_ATTEMPT = "mmzero.dev/attempt"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mmzero-operator", "app.kubernetes.io/name": "mmzero"}
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
METRICS_PORT = 9090
GPU = "nvidia.com/gpu"
SPEC_DIR = "/etc/mmzero"
STORE_MOUNT = "/var/lib/mmzero"
EXIT_USAGE = 2
"""`mmzero stage` exits 2 for a usage or spec error: retrying cannot help."""


def spec_config_name(run: str) -> str:
    return f"{run}-spec"


def job_name(run: str, stage: Stage, attempt: int) -> str:
    """`<run>-<stage>` for the first attempt, `<run>-<stage>-a<N>` after (at most 63 chars:
    the run name is at most 40)."""
    base = f"{run}-{stage.name}"
    return base if attempt == 1 else f"{base}-a{attempt}"


SERVER_PORT = 8000
VLLM_MODEL_DIR = "/models"
"""Where a vLLM server pod's init container exports the checkpoint it serves."""
LABEL_SERVER = "mmzero.dev/server"
_KIND_SHORT = {"proposer-grpo": "pg", "coder-grpo": "cg"}


def server_name(run: str, stage: Stage, role: str) -> str:
    """`<run>-i<N><pg|cg>-<role>`: at most 56 characters for a 40-character run name."""
    return f"{run}-i{stage.iteration}{_KIND_SHORT.get(stage.kind, 'x')}-{role}"


def servers(run: str, stage: Stage) -> list[tuple[str, str, PodGroup]]:
    """(name, input purpose, pod group) of each frozen-role server `stage` needs."""
    found = []
    for group in stage.pods:
        if group.component != "server" or group.role is None:
            continue
        asked = [p for p, key in stage.inputs if key in group.models and p != "init"]
        purpose = group.role if group.role in asked else asked[0]  # "judge" for the Coder
        found.append((server_name(run, stage, group.role), purpose, group))
    return found


def server_env(run: str, stage: Stage) -> list[dict[str, str]]:
    """`MMZERO_SERVER_<PURPOSE>` for each server of `stage`: where its stage pod asks."""
    return [
        {"name": f"MMZERO_SERVER_{purpose.upper()}", "value": f"http://{name}:{SERVER_PORT}"}
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


def _metadata(body: dict[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": {**MANAGED_BY, LABEL_RUN: body["metadata"]["name"], **labels},
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
        "metadata": _metadata(body, spec_config_name(body["metadata"]["name"]), {}),
        "data": {"run.yaml": yaml.dump(document, Dumper=_Dumper, sort_keys=False)},
    }


def _run_dir(spec: RunSpec, run: str) -> str:
    """The stage's run directory: on the shared claim, or (S3) the pod's download mirror."""
    uri = spec.storage.uri
    if uri.startswith("s3://"):
        return f"{STORE_MOUNT}/mirror/{run}"
    return f"{STORE_MOUNT}/{uri.strip('/')}/{run}"


STAGE_ENV_NAMES = ("MMZERO_RENDER_URL", "MMZERO_PUSHGATEWAY_URL")
"""Operator environment passed on to every stage pod: where the cluster's shared services are
(the chart sets the render service's URL and the Pushgateway's)."""


def with_stage_env(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """`job` with `env` added to its stage container (the operator's view of the cluster)."""
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
            {"name": "store", "mountPath": STORE_MOUNT},
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
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def rendezvous_name(job: str) -> str:
    """The headless Service by which a multi-node trainer's pods find index 0: the Job's name
    (with an `r` first for a run name that begins with a digit, since a Service's must not)."""
    return job if job[0].isalpha() else f"r{job}"


def _launcher(group: PodGroup, job: str) -> tuple[list[str], list[dict[str, Any]]]:
    """torchrun before `mmzero stage` for a trainer of several GPUs or nodes (one process per
    GPU), and its environment; across nodes, a static rendezvous at the pod of index 0 with
    each pod's node rank from its completion index (Kubeflow Trainer's torch layout)."""
    if group.component != "trainer" or (group.gpus <= 1 and group.replicas == 1):
        return [], []
    per_node = f"--nproc-per-node={max(group.gpus, 1)}"
    if group.replicas == 1:
        return ["torchrun", "--standalone", per_node, "--no-python"], []
    launcher = [
        "torchrun", f"--nnodes={group.replicas}", per_node, "--node-rank=$(MMZERO_NODE_RANK)",
        f"--master-addr={job}-0.{rendezvous_name(job)}", f"--master-port={RENDEZVOUS_PORT}",
        "--no-python",
    ]  # fmt: skip
    return launcher, [{"name": "MMZERO_NODE_RANK", "valueFrom": _completion_index()}]


def _completion_index() -> dict[str, Any]:
    """An indexed Job pod's index, as an environment variable's source."""
    return {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}


def _shards(stage: Stage) -> int:
    """Pods of a batch stage: `resources.generation.replicas` for one whose items are
    independent (`SHARDED_KINDS`), else one."""
    return stage.pods[0].replicas if stage.kind in SHARDED_KINDS else 1


def _gang(group: PodGroup) -> bool:
    """A trainer that spans nodes: an indexed Job of one pod per node that runs and fails as
    one."""
    return group.component == "trainer" and group.replicas > 1


def stage_objects(
    body: dict[str, Any], spec: RunSpec, stage: Stage, attempt: int
) -> list[dict[str, Any]]:
    """What one attempt of `stage` creates: its Job, after the headless Service of a trainer
    that spans nodes (owned by the run, like the Job; one per attempt, as the pods' DNS)."""
    job = stage_job(body, spec, stage, attempt)
    if not _gang(stage.pods[0]):
        return [job]
    name = job["metadata"]["name"]
    labels = {k: v for k, v in job["metadata"]["labels"].items() if k != QUEUE_LABEL}
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(body, rendezvous_name(name), labels),
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
    group = stage.pods[0]
    name = job_name(run, stage, attempt)
    labels = {
        LABEL_ITERATION: str(stage.iteration),
        LABEL_STAGE: stage.kind,
        LABEL_ATTEMPT: str(attempt),
    }
    launcher, launcher_env = _launcher(group, name)
    command = [
        *launcher, "mmzero", "stage", stage.kind, "--spec", f"{SPEC_DIR}/run.yaml",
        "--iteration", str(stage.iteration), "--run-dir", _run_dir(spec, run),
    ]  # fmt: skip
    shards = _shards(stage)
    if shards > 1:  # each pod one block of the items; the last to finish merges
        command += ["--shards", str(shards), "--shard", "$(MMZERO_SHARD)"]
        launcher_env = [{"name": "MMZERO_SHARD", "valueFrom": _completion_index()}]
    # The stage's Prometheus metrics; the chart's PodMonitor scrapes this port and adds the
    # run, iteration and stage labels from the pod's.
    env = [
        {"name": "MMZERO_METRICS_ADDRESS", "value": "0.0.0.0"},
        {"name": "MMZERO_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "MMZERO_METRICS_LINGER_SECONDS", "value": str(cluster.metrics_linger_seconds)},
        *server_env(run, stage),
        *launcher_env,
    ]
    ports = [{"name": "metrics", "containerPort": METRICS_PORT}]
    if _gang(group):
        ports.append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT})
    pod_spec = _pod_spec(run, spec, group, "stage", command, env, ports)
    pod_spec["restartPolicy"] = "Never"
    metadata = _metadata(body, name, labels)
    if cluster.queue:
        metadata["labels"][QUEUE_LABEL] = cluster.queue
    rules: list[dict[str, Any]] = [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "stage", "operator": "In", "values": [EXIT_USAGE]},
        }
    ]
    job_spec: dict[str, Any] = {
        "backoffLimit": cluster.pod_retries,
        "activeDeadlineSeconds": cluster.stage_deadline_seconds,
        "suspend": bool(cluster.queue),  # Kueue unsuspends it on admission
    }
    if _gang(group):
        # One lost pod leaves the others blocked in a collective: the first failure (a
        # preemption included) fails the whole attempt, and the stage retries as a new one.
        job_spec.update(backoffLimit=0, completionMode="Indexed",
                        completions=group.replicas, parallelism=group.replicas)  # fmt: skip
        pod_spec["subdomain"] = rendezvous_name(name)
    elif shards > 1:
        # Each shard retries alone; the others keep their finished blocks.
        job_spec.pop("backoffLimit")
        job_spec.update(completionMode="Indexed", completions=shards, parallelism=shards,
                        backoffLimitPerIndex=cluster.pod_retries)  # fmt: skip
        rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]})
    else:
        rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]})
    job_spec["podFailurePolicy"] = {"rules": rules}
    job_spec["template"] = {
        "metadata": {
            "labels": {**MANAGED_BY, LABEL_RUN: run, **labels},
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
    pod_spec: dict[str, Any], spec: RunSpec, group: PodGroup, max_prompt_tokens: int
) -> None:
    """Turn a `mmzero serve` pod into `vllm serve`: an init container exports the checkpoint
    (checked against its manifest) and its digest into an emptyDir, and vLLM serves that
    directory under the digest as its model name, which the stages' client checks."""
    (server,) = pod_spec["containers"]
    key = group.models[0]
    command = [
        "mmzero", "export", f"{VLLM_MODEL_DIR}/model", "--spec", f"{SPEC_DIR}/run.yaml",
        "--role", group.role or "solver", "--iteration", str(keys.checkpoint_iteration(key)),
        "--run-dir", server["command"][server["command"].index("--run-dir") + 1],
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
        labels = {
            LABEL_ITERATION: str(stage.iteration),
            LABEL_STAGE: stage.kind,
            LABEL_SERVER: name,
        }
        role = getattr(spec.roles, group.role or "solver")
        command = [
            "mmzero", "serve", "--spec", f"{SPEC_DIR}/run.yaml", "--key", group.models[0],
            "--run-dir", _run_dir(spec, run), "--host", "0.0.0.0", "--port", str(SERVER_PORT),
            # the prompt limit the stage would apply in-process, so both ways agree
            "--max-prompt-tokens", str(role.max_prompt_tokens),
            "--max-tokens", str(_longest_response(spec)), "--device", "auto",
        ]  # fmt: skip
        ports = [{"name": "http", "containerPort": SERVER_PORT}]
        pod_spec = _pod_spec(run, spec, group, "server", command, [], ports)
        if spec.cluster.server_backend == "vllm":
            _serve_with_vllm(pod_spec, spec, group, role.max_prompt_tokens)
        pod_spec["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/health", "port": "http"},  # both servers answer it
            "periodSeconds": 10,
        }
        pod_labels = {**MANAGED_BY, LABEL_RUN: run, **labels}
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _metadata(body, name, labels),
                "spec": {
                    "replicas": group.replicas,
                    "selector": {"matchLabels": {LABEL_SERVER: name}},
                    "template": {
                        "metadata": {
                            "labels": pod_labels,
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
                "metadata": _metadata(body, name, labels),
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
                "metadata": _metadata(body, name, labels),
                "spec": {
                    "selector": {LABEL_SERVER: name},
                    "ports": [{"name": "http", "port": SERVER_PORT, "targetPort": "http"}],
                },
            }
        )
    return objects
