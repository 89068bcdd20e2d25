"""Does a spec fit its model? Checked before any stage runs.

Token budgets that exceed the model's context, or an image budget whose tokens leave no room
in the Solver's prompt, would otherwise surface hours later as dropped prompts or a trainer
crash. The check reads only `config.json`, so it costs milliseconds on any model size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.models.loading import check_config, resolve_ref
from mmzero_runtime.spec import RunSpec


def context_length(config: Any) -> int:
    """The text model's position limit (`max_position_embeddings`)."""
    text = getattr(config, "text_config", None) or config
    return int(text.max_position_embeddings)


def image_tokens(config: Any, pixels: int) -> int:
    """LLM tokens one image of `pixels` area becomes: one per merged patch square."""
    vision = config.vision_config
    side = int(vision.patch_size) * int(vision.spatial_merge_size)
    return max(pixels // (side * side), 1)


def fit_problems(spec: RunSpec, config: Any) -> list[str]:
    """Every size in `spec` that cannot work with `config`, each naming the field to change."""
    context = context_length(config)
    problems = []
    for name in ("proposer", "coder", "solver"):
        grpo = getattr(spec.roles, name)
        total = grpo.max_prompt_tokens + grpo.max_response_tokens
        if total > context:
            problems.append(
                f"roles.{name}: max_prompt_tokens {grpo.max_prompt_tokens} + max_response_tokens "
                f"{grpo.max_response_tokens} = {total} exceeds the model's context of {context} "
                "tokens; lower one of them"
            )
    samplings = {
        "data.propose_sampling": spec.data.propose_sampling,
        "data.code_sampling": spec.data.code_sampling,
        "data.coder_service_sampling": spec.data.coder_service_sampling,
        "data.solver_service_sampling": spec.data.solver_service_sampling,
        "evaluation.sampling": spec.evaluation.sampling,
    }
    for field, sampling in samplings.items():
        if sampling.max_tokens >= context:
            problems.append(
                f"{field}.max_tokens: {sampling.max_tokens} leaves no room for a prompt in the "
                f"model's context of {context} tokens; lower it"
            )
    largest = image_tokens(config, spec.image.max_pixels)
    if largest >= spec.roles.solver.max_prompt_tokens:
        problems.append(
            f"image.max_pixels: {spec.image.max_pixels} pixels make up to {largest} image tokens, "
            f"not fewer than roles.solver.max_prompt_tokens {spec.roles.solver.max_prompt_tokens}; "
            "every Solver prompt would be dropped. Lower image.max_pixels or raise the prompt limit"
        )
    return problems


def check_fit(spec: RunSpec, ref: str | Path) -> None:
    """Raise a `ModelError` listing every problem of `fit_problems` for the model at `ref`."""
    path = resolve_ref(ref)
    problems = fit_problems(spec, check_config(path))
    if problems:
        raise ModelError(f"the spec does not fit model {path}: " + "; ".join(problems))
