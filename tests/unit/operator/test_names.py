"""Child names and labels: one template per kind, one labelling function, one run-name limit."""

from __future__ import annotations

from typing import Any

from annotated_types import MaxLen

from mmzero_operator.crd import crd
from mmzero_operator.manifests import server_objects, spec_config_map, stage_objects
from mmzero_operator.names import (
    LABEL_RUN,
    MAX_RUN_NAME,
    NAME_LIMIT,
    job_name,
    labels,
    selector,
    server_name,
)
from mmzero_runtime.spec import Metadata, RunSpec
from mmzero_runtime.stages.graph.plan import all_stages


def _body(run: str = "demo", **spec: Any) -> dict[str, Any]:
    document = RunSpec.model_validate({"iterations": 1, **spec}).model_dump(mode="json")
    return {"metadata": {"name": run, "namespace": "ml", "uid": "u-1"}, "spec": document}


def test_max_run_name_is_what_the_spec_and_the_crd_allow() -> None:
    (limit,) = (
        m.max_length for m in Metadata.model_fields["name"].metadata if isinstance(m, MaxLen)
    )
    assert MAX_RUN_NAME == limit == 40
    rules = [
        r["rule"]
        for r in crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
            "x-kubernetes-validations"
        ]
    ]
    assert f"size(self.metadata.name) <= {MAX_RUN_NAME}" in rules


def test_every_child_name_of_the_longest_run_fits_a_label() -> None:
    # the most iterations and attempts the spec allows, a run name of the most characters
    spec = RunSpec(iterations=100, cluster={"stage_attempts": 20})
    run = "r" * MAX_RUN_NAME
    for stage in all_stages(spec):
        assert len(job_name(run, stage, spec.cluster.stage_attempts)) <= NAME_LIMIT
        for role in ("proposer", "coder", "solver"):
            assert len(server_name(run, stage, role)) <= NAME_LIMIT
    longest = max(all_stages(spec), key=lambda s: len(s.name))
    assert len(job_name(run + "r", longest, 20)) > NAME_LIMIT  # the limit is tight


def test_every_child_and_pod_template_carries_the_run_labels() -> None:
    body = _body(cluster={"queue": "gpus"})
    spec = RunSpec.model_validate(body["spec"])
    objects = [spec_config_map(body)]
    for stage in all_stages(spec):
        objects += stage_objects(body, spec, stage, 1) + server_objects(body, spec, stage)
    run_labels = labels("demo")
    for obj in objects:
        assert obj["metadata"]["labels"].items() >= run_labels.items(), obj["metadata"]["name"]
        template = obj.get("spec", {}).get("template")
        if template is not None:
            assert template["metadata"]["labels"].items() >= run_labels.items()


def test_labels_name_the_stage_and_its_attempt_or_server() -> None:
    stage = all_stages(RunSpec(iterations=1))[0]
    assert labels("demo", stage, attempt=2) == {
        "app.kubernetes.io/managed-by": "mmzero-operator",
        "app.kubernetes.io/name": "mmzero",
        LABEL_RUN: "demo",
        "mmzero.dev/iteration": "1",
        "mmzero.dev/stage": "proposer-grpo",
        "mmzero.dev/attempt": "2",
    }
    assert labels("demo", stage, server="demo-i1pg-solver")["mmzero.dev/server"] == (
        "demo-i1pg-solver"
    )
    assert selector("demo") == (
        "app.kubernetes.io/managed-by=mmzero-operator,app.kubernetes.io/name=mmzero,"
        "mmzero.dev/run=demo"
    )
