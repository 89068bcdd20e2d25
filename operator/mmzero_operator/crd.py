"""The MMZeroRun CustomResourceDefinition, generated from `mmzero_runtime.spec`.

`spec.py` stays the one source of truth: the structural schema comes from its JSON schema
(bounds, enums, descriptions), every default from a `RunSpec()` instance (so each role keeps
its own defaults, as the local executor does), the rules that span fields from each model's
`cel_rules`. Two rules only a cluster needs are added here: once a run has left `Pending`, its
method is frozen (only `iterations` may be raised, `suspend` toggled), and `iterations` may
not shrink. `python -m mmzero_operator.crd --write FILE` refreshes the chart's copy; a test
fails when it is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmzero_operator.generated import print_or_write
from mmzero_operator.names import MAX_RUN_NAME
from mmzero_runtime import spec as spec_module
from mmzero_runtime.spec import API_GROUP, KIND, MUTABLE_AFTER_START, RunSpec

PLURAL = "mmzeroruns"
VERSION = "v1alpha1"
PHASES = ("Pending", "Running", "Suspended", "Stopped", "Succeeded", "Failed")
CHART_CRD = Path("charts/mmzero/crds/mmzero.dev_mmzeroruns.yaml")


class SchemaError(ValueError):
    """The spec's JSON schema has a construct this generator does not translate."""


def _section(model_name: str, node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one spec model, with the model's `cel_rules` attached."""
    section = _structural(node, defs)
    rules = getattr(getattr(spec_module, model_name, None), "cel_rules", ())
    if rules:
        section["x-kubernetes-validations"] = [
            {"rule": r.rule, "message": r.message, "fieldPath": f".{r.field}"} for r in rules
        ]
    return section


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON-schema node as an OpenAPI v3 structural schema node (refs inlined, CEL added)."""
    if "$ref" in node:
        return _section(
            node["$ref"].rsplit("/", 1)[-1], defs[node["$ref"].rsplit("/", 1)[-1]], defs
        )
    if "anyOf" in node:  # Optional[X]: X, nullable
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1 or len(node["anyOf"]) != 2:
            raise SchemaError(f"unsupported union {node['anyOf']}")
        optional = _structural(options[0], defs)
        optional["nullable"] = True
        if "description" in node:
            optional["description"] = node["description"]
        return optional
    out: dict[str, Any] = {}
    kind = node.get("type")
    if kind is None and "enum" in node:
        kind = "string"
    if kind not in ("object", "array", "string", "integer", "number", "boolean"):
        raise SchemaError(f"unsupported schema node {node}")
    out["type"] = kind
    for key in ("description", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
                "minItems", "maxItems", "minProperties", "maxProperties"):  # fmt: skip
        if key in node:
            out[key] = node[key]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:  # JSON Schema's number becomes OpenAPI v3's flag on the plain bound
            out[inclusive] = node[bound]
            out[bound] = True
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):  # a map (dict[str, X]); False (no extra keys) is the default
            out["additionalProperties"] = _structural(extra, defs)
        else:
            out["properties"] = {
                name: _structural(child, defs) for name, child in node.get("properties", {}).items()
            }
    if kind == "array":
        out["items"] = _structural(node["items"], defs)
    return out


def _set_defaults(schema: dict[str, Any], value: Any) -> None:
    """Put the instance's value as the default of every field, sections included: a missing
    section gets its whole default, a section given in part gets its own fields' defaults
    (a `{}` default would not do: the API server checks a default against the section's CEL
    rules before filling it)."""
    if value is not None:
        schema["default"] = value
    if schema["type"] == "object" and isinstance(value, dict) and "properties" in schema:
        for name, child in schema["properties"].items():
            if name in value:
                _set_defaults(child, value[name])


def spec_schema() -> dict[str, Any]:
    """The `spec` schema, defaults and cross-field rules included."""
    document = RunSpec.model_json_schema()
    schema = _section(RunSpec.__name__, document, document.get("$defs", {}))
    _set_defaults(schema, RunSpec().model_dump(mode="json"))
    return schema


def _condition() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "maxLength": 64},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 256},
            "message": {"type": "string", "maxLength": 4096},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }


def status_schema() -> dict[str, Any]:
    """Every status field the operator writes, declared (undeclared ones would be pruned)."""
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": list(PHASES)},
            "iteration": {"type": "integer", "description": "Iteration of the current stage."},
            "stage": {"type": "string", "description": "Stage running now (or last run)."},
            "step": {"type": "integer", "description": "Last checkpointed GRPO step."},
            "eta": {"type": "string", "format": "date-time"},
            "stagesDone": {"type": "integer"},
            "stagesTotal": {"type": "integer"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer"},
            "startTime": {"type": "string", "format": "date-time"},
            "completionTime": {"type": "string", "format": "date-time"},
            "attempts": {**counts, "description": "Attempts per stage name (retries + 1)."},
            "checkpoints": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Artifact key of each role's latest checkpoint.",
            },
            "alarms": {
                "type": "array",
                "description": "Health alarms firing now (spec.health), from the stages' figures.",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "stage": {"type": "string"},
                        "figure": {"type": "string"},
                        "value": {"type": "number"},
                        "threshold": {"type": "number"},
                        "message": {"type": "string", "maxLength": 4096},
                    },
                },
            },
            "conditions": {
                "type": "array",
                "items": _condition(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "kopf": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }


def _frozen_method_rule() -> dict[str, Any]:
    fields = [f for f in spec_schema()["properties"] if f not in MUTABLE_AFTER_START]
    same = " && ".join(f"self.spec.{f} == oldSelf.spec.{f}" for f in fields)
    return {
        "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) || "
        f"oldSelf.status.phase == 'Pending' || ({same})",
        "message": "the run has started: only spec.iterations (raised), spec.suspend and "
        "spec.cluster may change; create a new MMZeroRun for another method",
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_RUN_NAME}",
                "message": f"metadata.name must be at most {MAX_RUN_NAME} characters, so every "
                "child name fits",
            },
            {
                "rule": "self.spec.iterations >= oldSelf.spec.iterations",
                "message": "spec.iterations may be raised to extend a run, never lowered",
            },
            _frozen_method_rule(),
        ],
    }
    column = {"type": "string", "jsonPath": ""}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["mmz"],
                "categories": ["mmzero"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {**column, "name": "Phase", "jsonPath": ".status.phase"},
                        {"name": "Iteration", "type": "integer", "jsonPath": ".status.iteration"},
                        {**column, "name": "Stage", "jsonPath": ".status.stage"},
                        {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as YAML, with a header saying where it comes from."""
    header = (
        "# Generated from mmzero_runtime/spec.py by `python -m mmzero_operator.crd`; do not edit.\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    return print_or_write(render(), "MMZeroRun CRD", CHART_CRD, argv)


if __name__ == "__main__":
    raise SystemExit(main())
