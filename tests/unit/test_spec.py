"""The run spec: reference defaults, documentation of every field, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from mmzero_runtime.spec import (
    CONTENT_TYPES,
    SEED_TOPICS,
    MMZeroRun,
    RunSpec,
    SpecError,
    json_schema,
    load_run,
    parse_run,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "run.yaml"

# (path, reference value, where the reference notes give it)
REFERENCE_VALUES = [
    ("model", "Qwen/Qwen3-VL-8B-Instruct", "§1 main_svg.sh"),
    ("iterations", 12, "§2.1 loop to 12"),
    ("roles.proposer.group_size", 4, "§7.2"),
    ("roles.proposer.rollout_batch_size", 18, "§7.2"),
    ("roles.proposer.global_batch_size", 18, "§7.2"),
    ("roles.proposer.micro_batch_size", 1, "§7.2"),
    ("roles.proposer.micro_batch_size_experience", 2, "§7.2"),
    ("roles.proposer.temperature", 1.0, "§7.2"),
    ("roles.proposer.top_p", 0.99, "§7.2"),
    ("roles.proposer.max_response_tokens", 4096, "§7.2"),
    ("roles.coder.group_size", 4, "§7.2"),
    ("roles.coder.rollout_batch_size", 320, "§7.2"),
    ("roles.coder.global_batch_size", 64, "§7.2"),
    ("roles.coder.temperature", 0.7, "§7.2"),
    ("roles.coder.top_p", 0.95, "§7.2"),
    ("roles.solver.group_size", 8, "§7.2"),
    ("roles.solver.rollout_batch_size", 512, "§7.2"),
    ("roles.solver.global_batch_size", 64, "§7.2"),
    ("roles.solver.micro_batch_size_experience", 1, "§7.2"),
    ("roles.solver.max_prompt_tokens", 8192, "§7.2"),
    ("roles.solver.steps", 20, "§7.1"),
    ("roles.solver.learning_rate", 1e-6, "§7.1"),
    ("roles.solver.weight_decay", 1e-2, "§7.1"),
    ("roles.solver.max_grad_norm", 1.0, "§7.1"),
    ("roles.solver.kl_coef", 1e-2, "§7.1"),
    ("roles.solver.kl_type", "low_var_kl", "§7.1"),
    ("roles.solver.clip_ratio_low", 0.2, "§7.1"),
    ("roles.solver.clip_ratio_high", 0.3, "§7.1"),
    ("roles.solver.clip_ratio_dual", 3.0, "§7.1"),
    ("roles.solver.loss_aggregation", "token_mean", "§7.1"),
    ("roles.solver.advantage_eps", 1e-6, "§7.1"),
    ("roles.solver.zero_variance_groups", "keep", "§7.1 online filtering off"),
    ("roles.solver.freeze_vision_tower", False, "§7.1"),
    ("data.seed_rows_per_topic", 126, "§2.2"),
    ("data.proposals_for_coder", 3304, "§2.4"),
    ("data.proposals_for_solver", 5000, "§2.5"),
    ("data.propose_sampling.top_p", 0.95, "§2.4"),
    ("data.code_sampling.temperature", 0.7, "§2.4"),
    ("data.solver_service_sampling.top_k", 40, "§8.1"),
    ("image.min_pixels", 262_144, "§6"),
    ("image.max_pixels", 4_194_304, "§6"),
    ("render.timeout_seconds", 30.0, "§4"),
    ("render.max_aspect_ratio", 100.0, "§4"),
    ("rewards.proposer.coder_samples", 4, "§5.3"),
    ("rewards.proposer.solver_samples", 5, "§5.3"),
    ("rewards.proposer.solvability_cap", 0.5, "§5.3"),
    ("rewards.proposer.easy_hard_threshold", 0.15, "§5.3"),
    ("rewards.proposer.easy_hard_penalty", 0.3, "§5.3"),
    ("rewards.proposer.content_type_weight", 0.15, "§5.3"),
    ("rewards.proposer.content_type_threshold", 0.5, "§5.3"),
    ("rewards.proposer.diversity_weight", 0.5, "§5.3"),
    ("rewards.proposer.diversity_caption_weight", 0.45, "§5.3"),
    ("rewards.proposer.diversity_easy_question_weight", 0.20, "§5.3"),
    ("rewards.proposer.diversity_hard_question_weight", 0.35, "§5.3"),
    ("rewards.proposer.diversity_distance_threshold", 0.25, "§5.3"),
    ("rewards.proposer.diversity_mode", "penalty", "§5.3 / §11"),
    ("rewards.proposer.parse_failure_reward", -1.0, "§5.3"),
    ("rewards.coder.solver_samples", 5, "§5.4"),
    ("rewards.coder.no_render_penalty", 0.1, "§5.4"),
    ("rewards.coder.syntax_error_penalty", 0.05, "§5.4"),
    ("rewards.coder.wrong_type_penalty", 0.5, "§5.4"),
    ("rewards.coder.floor", -0.5, "§5.4"),
    ("rewards.coder.judge", "previous_solver", "§13.11 fixed"),
    ("rewards.solver.format_weight", 0.1, "§5.5"),
    ("rewards.solver.format_check", "reference", "§5.5"),
    ("rewards.solver.labels", "offline_majority", "§5.5"),
    ("rewards.solver.label_samples", 10, "§2.5"),
    ("grading.grader", "mathruler", "§5.1"),
    ("grading.timeout_seconds", 10.0, "§5.2"),
    ("filters.coder_render_samples", 4, "§6"),
    ("filters.coder_min_render_rate", 0.25, "§6"),
    ("filters.coder_max_render_rate", 0.75, "§6"),
    ("filters.easy_filter", "self_consistency", "§6"),
    ("filters.min_easy_score", 0.5, "§6"),
    ("filters.min_hard_consistency", 0.25, "§6"),
    ("filters.max_hard_consistency", 0.75, "§6"),
    ("evaluation.sampling.temperature", 0.6, "§9"),
    ("resources.proposer_trainer.gpus", 3, "§8.1"),
    ("resources.coder_server.replicas", 2, "§8.1"),
    ("resources.solver_server.replicas", 3, "§8.1"),
    ("resources.judge_server.replicas", 4, "§8.1"),
    ("resources.coder_trainer.gpus", 4, "§8.1"),
    ("resources.solver_trainer.gpus", 8, "§8.1"),
]


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    seen.add(model)
    for info in model.model_fields.values():
        annotation = info.annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_model and annotation not in seen:
            _models(annotation, seen)
    return seen


@pytest.mark.parametrize(
    ("path", "value", "where"), REFERENCE_VALUES, ids=[r[0] for r in REFERENCE_VALUES]
)
def test_runspec_default_equals_reference_value(path: str, value: Any, where: str) -> None:
    assert _get(RunSpec(), path) == value, f"{path} should be the reference value ({where})"


def test_runspec_default_topics_are_the_eight_seed_topics() -> None:
    assert RunSpec().data.topics == list(SEED_TOPICS)
    assert len(SEED_TOPICS) == 8
    assert "other" in CONTENT_TYPES


@pytest.mark.parametrize(
    "model", sorted(_models(MMZeroRun, set()), key=lambda m: m.__name__), ids=lambda m: m.__name__
)
def test_every_spec_field_has_default_and_docstring(model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        assert not info.is_required(), f"{model.__name__}.{name} has no default"
        assert info.description and len(info.description) > 10, (
            f"{model.__name__}.{name} has no attribute docstring"
        )


def test_example_run_file_validates() -> None:
    run = load_run(EXAMPLE)
    assert run.metadata.name == "tiny"
    assert run.spec.iterations == 1


def _leaves(document: Any, prefix: str = "") -> list[str]:
    if isinstance(document, dict):
        return [leaf for k, v in document.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_example_run_file_overrides_only_sizes_steps_learning_rates_and_two_temperatures() -> None:
    # The tiny profile may change how big and how long, never rewards, filters or the loss; the
    # only sampling it changes are the temperatures its comments justify (a tiny Coder that
    # renders everything at T 0.7, a tiny Solver that scatters at T 1.0).
    size_words = (
        "size",
        "steps",
        "learning_rate",
        "tokens",
        "pixels",
        "rows",
        "proposals",
        "items",
        "iterations",
        "gpus",
        "cpu",
        "memory",
        "replicas",
    )
    spec = yaml.safe_load(EXAMPLE.read_text())["spec"]
    allowed_exact = {
        "model",
        "seed",
        "roles.coder.temperature",
        "data.code_sampling.temperature",
        "data.solver_service_sampling.temperature",
    }
    for leaf in _leaves(spec):
        last = leaf.rsplit(".", 1)[-1]
        assert leaf in allowed_exact or any(w in last for w in size_words), (
            f"examples/run.yaml overrides {leaf}, which is not a size, step count or learning rate"
        )


def test_bad_spec_reports_every_wrong_field_in_one_message() -> None:
    document = {
        "apiVersion": "mmzero.dev/v1alpha1",
        "kind": "MMZeroRun",
        "metadata": {"name": "demo"},
        "spec": {
            "iterations": 0,  # below the minimum
            "roles": {"solver": {"group_size": 1}},  # GRPO needs 2 samples per prompt
            "filters": {"easy_filter": "vibes"},  # not one of the named options
            "colour": "blue",  # unknown field
        },
    }
    with pytest.raises(SpecError) as caught:
        parse_run(document, "demo.yaml")
    message = str(caught.value)
    assert message.startswith("demo.yaml: 4 problem(s)")
    assert "spec.iterations: got 0" in message
    assert "spec.roles.solver.group_size: got 1" in message and "at least 2" in message
    assert "spec.filters.easy_filter: got 'vibes'" in message and "self_consistency" in message
    assert "spec.colour: unknown field" in message


@pytest.mark.parametrize(
    ("role", "override", "expected"),
    [
        # an update larger than the step's sample
        ("coder", {"rollout_batch_size": 8, "global_batch_size": 16}, "global_batch_size: got 16"),
        # a step that does not split into whole updates
        ("coder", {"rollout_batch_size": 10, "global_batch_size": 4}, "not a multiple"),
        # a micro batch that does not divide the update's sequences (4 x 4 = 16)
        (
            "solver",
            {
                "rollout_batch_size": 4,
                "global_batch_size": 4,
                "group_size": 4,
                "micro_batch_size": 3,
            },
            "micro_batch_size: got 3",
        ),
    ],
    ids=["global-above-rollout", "rollout-not-multiple", "micro-not-divisor"],
)
def test_batch_sizes_that_cannot_fit_are_refused(
    role: str, override: dict[str, int], expected: str
) -> None:
    document = {"spec": {"roles": {role: override}}}
    with pytest.raises(SpecError, match=expected):
        parse_run(document)


def test_proposer_batch_larger_than_seed_set_is_refused() -> None:
    document = {
        "spec": {
            "data": {"seed_rows_per_topic": 1},
            "roles": {"proposer": {"rollout_batch_size": 9, "global_batch_size": 9}},
        }
    }
    with pytest.raises(SpecError, match="more than the 8 seed rows"):
        parse_run(document)


def test_wrong_kind_and_non_mapping_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="kind"):
        parse_run({"kind": "Deployment"})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_run(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_run(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_run(broken)


def test_json_schema_carries_bounds_enums_and_descriptions() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    grpo = schema["$defs"]["GRPOSpec"]["properties"]
    assert grpo["group_size"]["minimum"] == 2
    assert grpo["kl_type"]["enum"] == ["low_var_kl", "kl", "mse", "abs"]
    assert "Responses sampled per prompt" in grpo["group_size"]["description"]
    assert "mmzero.dev/v1alpha1" in text


def test_spec_reference_page_is_current() -> None:
    from mmzero_runtime.spec_docs import END, PAGE, START, reference_markdown

    page = (ROOT / PAGE).read_text()
    assert START in page and END in page
    assert reference_markdown() in page, f"run `make docs` (mmzero spec docs --write {PAGE})"


@pytest.mark.parametrize(
    ("override", "path", "expected"),
    [
        # a Coder section given in part keeps the Coder's own temperature and batch
        ({"roles": {"coder": {"steps": 2}}}, "roles.coder.temperature", 0.7),
        ({"roles": {"coder": {"steps": 2}}}, "roles.coder.rollout_batch_size", 320),
        # a sampling section given in part keeps that context's top-p
        ({"data": {"code_sampling": {"max_tokens": 9}}}, "data.code_sampling.top_p", 0.95),
        ({"evaluation": {"sampling": {"max_tokens": 9}}}, "evaluation.sampling.temperature", 0.6),
        # a resources entry given in part keeps that pod kind's CPU request
        ({"resources": {"solver_trainer": {"gpus": 4}}}, "resources.solver_trainer.cpu", "64"),
    ],
    ids=["coder-temperature", "coder-batch", "code-top-p", "eval-temperature", "trainer-cpu"],
)
def test_partial_section_keeps_its_own_reference_defaults(
    override: dict[str, Any], path: str, expected: Any
) -> None:
    assert _get(parse_run({"spec": override}).spec, path) == expected
