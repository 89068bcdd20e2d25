"""The generated MMZeroRun CRD on a real API server: what `kubectl apply` accepts, refuses and
fills in, and what a started run may still change."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# hack/cluster is put on sys.path by tests/cluster/conftest.py.
from cluster import Cluster

from mmzero_operator.crd import CHART_CRD, PLURAL
from mmzero_runtime.spec import API_GROUP, RunSpec, SpecError, load_run, parse_run

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


def _wrong_type(value: Any) -> Any:
    """A value of another JSON type than `value`'s, wrong for the field whatever its type."""
    match value:
        case dict():
            return "not-a-mapping"
        case list():
            return "not-a-list"
        case str():
            return ["not", "a", "string"]
        case _:  # bool, int, float
            return "not-a-number"


def _field_paths(node: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """(dotted path, value) of every field under `node`, sections included, lists whole;
    unset optional fields (None) are left out, their type being open."""
    found = []
    for key, value in node.items():
        if value is None:
            continue
        path = f"{prefix}.{key}"
        found.append((path, value))
        if isinstance(value, dict):
            found += _field_paths(value, path)
    return found


def test_wrong_type_at_every_spec_field_is_refused_by_server_and_runtime(
    kube_cluster: Cluster, crd: str, namespace: str
) -> None:
    # the bad-input rule for the CRD (tests/fuzz covers run files): a server-side dry run of
    # the example with one field of the wrong type is a 4xx naming that field, and the runtime
    # refuses the same file naming it too; nothing is stored
    full = _example()
    full["spec"] = load_run(EXAMPLE).spec.model_dump(mode="json")
    paths = _field_paths(full["spec"], "spec")
    documents = []
    for index, (path, value) in enumerate(paths):
        document = json.loads(json.dumps(full))
        document["metadata"]["name"] = f"wrong-type-{index}"
        *parents, leaf = path.split(".")[1:]
        node = document["spec"]
        for part in parents:
            node = node[part]
        node[leaf] = _wrong_type(value)
        documents.append(document)
    result = kube_cluster.kubectl(
        "apply", "--dry-run=server", "--validate=false", "-n", namespace, "-f", "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}),
        check=False, timeout=300,
    )  # fmt: skip
    # one line per refused item: ... MMZeroRun.mmzero.dev "wrong-type-7" is invalid: spec...
    errors = {
        found.group(1): line
        for line in result.stderr.splitlines()
        if (found := re.search(r'"(wrong-type-\d+)" is invalid', line))
    }
    missed = []
    for index, (path, _) in enumerate(paths):
        name = f"wrong-type-{index}"
        server = errors.get(name, "accepted")
        if "is invalid" not in server or path not in server:
            missed.append(f"server {path}: {server}")
        with pytest.raises(SpecError) as refused:
            parse_run(documents[index], name, file=True)
        if path not in str(refused.value):
            missed.append(f"runtime {path}: {refused.value}")
    assert not missed, "\n".join(missed[:20]) + "\n" + result.stderr[:1500]
    assert len(paths) > 100  # every section and leaf of the spec, not a handful
    assert kube_cluster.get_json("mmzerorun", "-n", namespace)["items"] == []


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
