"""The spec-vs-model fit check: sizes that cannot work are refused before any stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.models.fit import check_fit, fit_problems, image_tokens
from mmzero_runtime.models.loading import check_config
from mmzero_runtime.spec import RunSpec, load_run

ROOT = Path(__file__).resolve().parents[3]


def _example() -> RunSpec:
    return load_run(ROOT / "examples" / "run.yaml").spec


def _with(spec: RunSpec, **roles: dict[str, int]) -> RunSpec:
    document = spec.model_dump(mode="json")
    for role, fields in roles.items():
        document["roles"][role].update(fields)
    return RunSpec.model_validate(document)


def test_example_spec_fits_the_tiny_model(tiny_vlm_dir: Path) -> None:
    check_fit(_example(), tiny_vlm_dir)


def test_token_budgets_beyond_the_context_name_the_role_and_fields(tiny_vlm_dir: Path) -> None:
    spec = _with(_example(), coder={"max_prompt_tokens": 4000, "max_response_tokens": 4000})
    with pytest.raises(ModelError) as caught:
        check_fit(spec, tiny_vlm_dir)
    message = str(caught.value)
    assert "roles.coder: max_prompt_tokens 4000 + max_response_tokens 4000 = 8000" in message
    assert "context of 4096" in message and "roles.solver" not in message


def test_image_budget_larger_than_the_solver_prompt_is_refused(tiny_vlm_dir: Path) -> None:
    document = _example().model_dump(mode="json")
    document["image"]["max_pixels"] = 2048 * 2048
    spec = RunSpec.model_validate(document)
    config = check_config(tiny_vlm_dir)
    assert image_tokens(config, 2048 * 2048) == 2048 * 2048 // 28**2
    problems = fit_problems(spec, config)
    assert len(problems) == 1 and problems[0].startswith("image.max_pixels: 4194304 pixels")


def test_sampling_that_fills_the_context_is_refused(tiny_vlm_dir: Path) -> None:
    document = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())["spec"]
    document["evaluation"]["sampling"]["max_tokens"] = 4096
    with pytest.raises(ModelError, match=r"evaluation\.sampling\.max_tokens: 4096"):
        check_fit(RunSpec.model_validate(document), tiny_vlm_dir)


def test_text_only_model_is_refused_before_sizes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "vocab_size": 8}')
    with pytest.raises(ModelError, match="text-only"):
        check_fit(_example(), tmp_path)
