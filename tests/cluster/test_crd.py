"""The generated MMZeroRun CRD on a real API server: what `kubectl apply` accepts, refuses and
fills in, and what a started run may still change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster is put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster

from mmzero_operator.crd import CHART_CRD, PLURAL
from mmzero_runtime.spec import API_GROUP, RunSpec, load_run

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "run.yaml"


@pytest.fixture(scope="session")
def crd(kube_cluster: Cluster) -> str:
    name = f"{PLURAL}.{API_GROUP}"
    kube_cluster.install_crd(ROOT / CHART_CRD, name)
    return name


def _example(**edit: Any) -> dict[str, Any]:
    document = yaml.safe_load(EXAMPLE.read_text())
    for path, value in edit.items():
        node = document["spec"]
        *parents, leaf = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return document


Apply = Callable[..., Any]


@pytest.fixture
def apply(kube_cluster: Cluster, crd: str, namespace: str) -> Apply:
    """`kubectl apply` a document in the test's namespace; returns the completed process."""

    def run(document: dict[str, Any], check: bool = True) -> Any:
        return kube_cluster.kubectl(
            "apply", "--validate=strict", "-n", namespace, "-f", "-",
            stdin=json.dumps(document), check=check,
        )  # fmt: skip

    return run


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def test_example_is_accepted_and_defaulted_exactly_as_the_runtime_does(
    kube_cluster: Cluster, apply: Apply, namespace: str
) -> None:
    apply(_example())
    stored = kube_cluster.get_json("mmzerorun", "tiny", "-n", namespace)
    runtime = load_run(EXAMPLE).spec
    # every value the runtime fills in is stored; an optional field left unset (None) is null
    # inside a defaulted section and absent elsewhere (the API server applies no null default)
    assert _without_none(stored["spec"]) == runtime.model_dump(mode="json", exclude_none=True)
    assert RunSpec.model_validate(stored["spec"]) == runtime


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"roles__solver__group_size": 1}, "spec.roles.solver.group_size"),
        ({"filters__easy_filter": "vibes"}, "spec.filters.easy_filter"),
        ({"colour": "red"}, 'unknown field "spec.colour"'),
        ({"roles__coder__global_batch_size": 8}, "spec.roles.coder.global_batch_size"),
        ({"image__min_pixels": 40000}, "min_pixels must be <= max_pixels"),
        ({"roles__proposer__rollout_batch_size": 32}, "must be <= the seed rows"),
    ],
    ids=["bound", "enum", "unknown-field", "cel-batches", "cel-image", "cel-run"],
)
def test_bad_manifest_is_refused_naming_the_field(
    apply: Apply, edit: dict[str, Any], expected: str
) -> None:
    result = apply(_example(**edit), check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_metadata_name_over_forty_characters_is_refused(apply: Apply) -> None:
    document = _example()
    document["metadata"]["name"] = "r" * 41
    result = apply(document, check=False)
    assert result.returncode != 0 and "at most 40 characters" in result.stderr


def _set_phase(cluster: Cluster, namespace: str, phase: str) -> None:
    cluster.kubectl(
        "patch", "mmzerorun", "tiny", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": phase}}),
    )  # fmt: skip


def test_started_run_freezes_the_method_but_may_grow_and_pause(
    kube_cluster: Cluster, apply: Apply, namespace: str
) -> None:
    apply(_example())
    apply(_example(seed=7))  # still Pending: anything may change
    _set_phase(kube_cluster, namespace, "Running")

    changed = apply(_example(seed=8), check=False)
    assert changed.returncode != 0 and "the run has started" in changed.stderr

    apply(_example(seed=7, iterations=3, suspend=True))
    stored = kube_cluster.get_json("mmzerorun", "tiny", "-n", namespace)["spec"]
    assert (stored["iterations"], stored["suspend"]) == (3, True)

    shrunk = apply(_example(seed=7, iterations=2, suspend=True), check=False)
    assert shrunk.returncode != 0 and "never lowered" in shrunk.stderr


def test_printer_columns_show_phase_iteration_and_stage(
    kube_cluster: Cluster, apply: Apply, namespace: str
) -> None:
    apply(_example())
    kube_cluster.kubectl(
        "patch", "mmzerorun", "tiny", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Running", "iteration": 1, "stage": "i1-propose"}}),
    )  # fmt: skip
    table = kube_cluster.kubectl("get", "mmz", "-n", namespace).stdout.split("\n")
    assert table[0].split()[:5] == ["NAME", "PHASE", "ITERATION", "STAGE", "STEP"]
    assert table[1].split()[:4] == ["tiny", "Running", "1", "i1-propose"]
