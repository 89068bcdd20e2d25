"""The generated CRD stays in step with the spec: its fields, defaults and cross-field rules."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from mmzero_operator.crd import CHART_CRD, crd, render, spec_schema
from mmzero_runtime import spec as spec_module
from mmzero_runtime.spec import MUTABLE_AFTER_START, RunSpec

ROOT = Path(__file__).resolve().parents[3]


def test_chart_crd_is_current() -> None:
    assert (ROOT / CHART_CRD).read_text() == render(), (
        f"{CHART_CRD} is stale: python -m mmzero_operator.crd --write {CHART_CRD}"
    )


def _spec_models() -> list[type[BaseModel]]:
    return [
        value
        for value in vars(spec_module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == spec_module.__name__
    ]


def test_every_cross_field_validator_has_a_cel_rule() -> None:
    """A model that checks fields against each other in Python must say so to the API server."""
    for model in _spec_models():
        decorators = model.__pydantic_decorators__.model_validators
        checks = [name for name, d in decorators.items() if d.info.mode == "after"]
        if checks:
            assert getattr(model, "cel_rules", ()), (
                f"{model.__name__} has {checks} but no cel_rules"
            )


def test_every_spec_field_is_in_the_schema_with_its_default() -> None:
    schema = spec_schema()
    defaults = RunSpec().model_dump(mode="json")
    assert set(schema["properties"]) == set(defaults)
    for name, value in defaults.items():
        assert schema["properties"][name]["default"] == value, name


def test_only_iterations_and_suspend_stay_mutable() -> None:
    rules = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    frozen = next(r["rule"] for r in rules if "has started" in r["message"])
    for name in RunSpec.model_fields:
        assert (f"self.spec.{name} == oldSelf.spec.{name}" in frozen) != (
            name in MUTABLE_AFTER_START
        )
