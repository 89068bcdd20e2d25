"""The objects a run owns: its spec ConfigMap and one Job per stage attempt.

Names are deterministic (`<run>-spec`, `<run>-<stage>` and `<run>-<stage>-a<N>` for the N-th
attempt), so a restarted operator finds what it made instead of making it again; labels carry
run, iteration, stage and attempt; every object has the run as its controller owner, so the
garbage collector removes them with the run.

A stage attempt is one pod running `mmzero stage`, the same command the local executor runs.
Until frozen roles are served on their own (`mmzero serve`), the pod loads them in-process and
so requests the GPUs of every pod group of the stage (`Stage.gpus`: 8 for the reference's
Proposer GRPO layout), with the CPU and memory of its main group.
"""

from __future__ import annotations

from typing import Any

import yaml

from mmzero_runtime.spec import API_VERSION, KIND, RunSpec
from mmzero_runtime.stages.plan import Stage

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


STAGE_ENV_NAMES = ("MMZERO_RENDER_URL",)
"""Operator environment passed on to every stage pod: where the cluster's shared services are
(the chart sets the render service's URL)."""


def with_stage_env(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """`job` with `env` added to its stage container (the operator's view of the cluster)."""
    if env:
        container = job["spec"]["template"]["spec"]["containers"][0]
        container["env"].extend(
            {"name": name, "value": value} for name, value in sorted(env.items())
        )
    return job


def stage_job(body: dict[str, Any], spec: RunSpec, stage: Stage, attempt: int) -> dict[str, Any]:
    """The Job of one attempt of `stage`."""
    run = body["metadata"]["name"]
    cluster = spec.cluster
    main = stage.pods[0]
    labels = {
        LABEL_ITERATION: str(stage.iteration),
        LABEL_STAGE: stage.kind,
        LABEL_ATTEMPT: str(attempt),
    }
    limits: dict[str, str] = {"cpu": main.cpu, "memory": main.memory}
    if stage.gpus:
        limits[GPU] = str(stage.gpus)
    command = [
        "mmzero", "stage", stage.kind, "--spec", f"{SPEC_DIR}/run.yaml",
        "--iteration", str(stage.iteration), "--run-dir", _run_dir(spec, run),
    ]  # fmt: skip
    mounts = [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "spec", "configMap": {"name": spec_config_name(run)}}]
    mounts.append({"name": "store", "mountPath": STORE_MOUNT})
    if cluster.storage_claim:
        volumes.append(
            {"name": "store", "persistentVolumeClaim": {"claimName": cluster.storage_claim}}
        )
    else:  # S3: the pod's mirror of its inputs and its scratch space, gone with the pod
        volumes.append({"name": "store", "emptyDir": {}})
    container = {
        "name": "stage",
        "image": cluster.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "command": command,
        "resources": {"requests": dict(limits), "limits": limits},
        "volumeMounts": mounts,
        # The stage's Prometheus metrics; the chart's PodMonitor scrapes this port and adds
        # the run, iteration and stage labels from the pod's.
        "env": [{"name": "MMZERO_METRICS_PORT", "value": str(METRICS_PORT)}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        # S3 credentials (and AWS_ENDPOINT_URL) as environment, never in the Job's own spec.
        "envFrom": (
            [{"secretRef": {"name": spec.storage.credentials_secret}}]
            if spec.storage.credentials_secret
            else []
        ),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
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
    metadata = _metadata(body, job_name(run, stage, attempt), labels)
    if cluster.queue:
        metadata["labels"][QUEUE_LABEL] = cluster.queue
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": cluster.pod_retries,
            "activeDeadlineSeconds": cluster.stage_deadline_seconds,
            "suspend": bool(cluster.queue),  # Kueue unsuspends it on admission
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "stage",
                            "operator": "In",
                            "values": [EXIT_USAGE],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {
                "metadata": {
                    "labels": {**MANAGED_BY, LABEL_RUN: run, **labels},
                    "annotations": dict(cluster.pod_annotations),
                },
                "spec": pod_spec,
            },
        },
    }
