"""The trainer tests' shared inputs: a small GRPO spec and two groups of rollouts on the tiny
model's Solver and Proposer prompts (imported by the tests and by deepspeed_step.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.spec import GRPOSpec
from mmzero_runtime.training.batch import Rollout

SPEC = GRPOSpec(
    group_size=2,
    rollout_batch_size=2,
    global_batch_size=1,  # two optimizer updates per step
    micro_batch_size=1,
    micro_batch_size_experience=2,
    weight_decay=0.0,  # parameters then move only where the gradient is non-zero
    max_prompt_tokens=256,
)


def make_rollouts(image: Path, seed: int, *, text_group: bool = True) -> list[Rollout]:
    """Two groups of two: an image (Solver) prompt and a text-only (Proposer) prompt, or with
    `text_group=False` a second image prompt, so that every update has an image."""
    generator = torch.Generator().manual_seed(seed)

    def response(length: int) -> list[int]:
        return torch.randint(10, 500, (length,), generator=generator).tolist()  # < vocab size

    solver = build_solver_messages("Which bar is taller?")
    second = build_proposer_messages("chart and graph understanding")
    second_image = None
    if not text_group:
        second, second_image = build_solver_messages("What is the red bar's value?"), image
    return [
        Rollout(f"{seed}-0", f"{seed}-s", solver, image, response(5), 1.0),
        Rollout(f"{seed}-1", f"{seed}-s", solver, image, response(3), 0.0),
        Rollout(f"{seed}-2", f"{seed}-p", second, second_image, response(4), 0.2),
        Rollout(f"{seed}-3", f"{seed}-p", second, second_image, response(6), 0.9),
    ]


UNCLIPPED = SPEC.model_copy(update={"max_grad_norm": 1e9})
"""SPEC without gradient clipping: engines whose norms differ (ZeRO-3 counts tied weights
twice) then make the same updates, so they can be compared step after step."""
