"""Rollouts in, padded model batches out: the prompt encoded exactly as rollout encoded it.

Each group's prompt goes through `models.inputs.encode` (the one preprocessing path: chat
template + pixel budget) once and is shared by the group's responses. A batch is right-padded
prompt + response per row, so every valid token keeps the positions it had when sampled, and
`positions` names, for each response token, the hidden state that predicted it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmzero_runtime.models.inputs import encode
from mmzero_runtime.roles.chat import ChatMessage
from mmzero_runtime.spec import ImageSpec
from mmzero_runtime.training.errors import TrainingError


@dataclass(frozen=True)
class Rollout:
    """One sampled response of a GRPO step, with its reward."""

    request_id: str
    """Unique id of this response (used in error messages)."""
    group_id: str
    """The prompt's group: responses to one prompt share it and are normalised together."""
    messages: Sequence[ChatMessage]
    """The prompt's chat messages, as given to rollout."""
    image: Path | None
    """The prompt's image (a PNG path), or None for a text-only prompt."""
    response_ids: Sequence[int]
    """Sampled token ids, without the prompt, ending with EOS unless cut at max length."""
    reward: float
    """Scalar outcome reward of the response."""
    logprobs: Sequence[float] | None = None
    """Log-probs the sampler reported per response token (temperature-scaled), if any: the
    trainer reports their gap to its own (`logprob/rollout_abs_diff_mean`), the guard against
    rollout weights going stale (rl-anchors §2.6 pitfall 4)."""


def check_rollouts(rollouts: Sequence[Rollout], vision_ids: set[int], step: int) -> None:
    """Raise TrainingError for rollouts a GRPO step cannot use honestly."""
    if not rollouts:
        raise TrainingError(f"step {step}: no rollouts")
    if len({r.request_id for r in rollouts}) != len(rollouts):
        raise TrainingError(f"step {step}: duplicate request ids in rollouts")
    for rollout in rollouts:
        if not rollout.response_ids:
            raise TrainingError(
                f"request {rollout.request_id!r}: empty response; a sampled response has at "
                "least one token (EOS), so the rollout lost it"
            )
        found = vision_ids.intersection(rollout.response_ids)
        if found:
            raise TrainingError(
                f"request {rollout.request_id!r}: the response contains vision placeholder "
                f"token(s) {sorted(found)}, which the forward pass would take for image slots; "
                "generation must never emit them (mask their logits)"
            )


@dataclass(frozen=True)
class Prompt:
    """One encoded prompt: what the model saw before the response."""

    input_ids: torch.Tensor  # (P,)
    mm_token_type_ids: torch.Tensor  # (P,) 1 on image tokens
    pixel_values: torch.Tensor | None  # (patches, C * patch^2 * temporal)
    image_grid_thw: torch.Tensor | None  # (images, 3)


def encode_prompts(
    processor: Any, rollouts: Sequence[Rollout], *, image_spec: ImageSpec, max_prompt_tokens: int
) -> dict[str, Prompt]:
    """Each group's prompt encoded once; raise if a prompt is over the limit or groups disagree."""
    prompts: dict[str, Prompt] = {}
    seen: dict[str, Rollout] = {}
    for rollout in rollouts:
        first = seen.setdefault(rollout.group_id, rollout)
        if first is not rollout:
            if first.messages != rollout.messages or first.image != rollout.image:
                raise TrainingError(
                    f"group {rollout.group_id!r}: request {rollout.request_id!r} has another "
                    f"prompt than request {first.request_id!r}; a group is one prompt's responses"
                )
            continue
        images = [] if rollout.image is None else [rollout.image]
        feature = encode(processor, rollout.messages, images, image_spec=image_spec)
        length = int(feature["input_ids"].shape[1])
        if length > max_prompt_tokens:
            raise TrainingError(
                f"group {rollout.group_id!r} (request {rollout.request_id!r}): prompt of {length} "
                f"tokens, image tokens included, exceeds max_prompt_tokens {max_prompt_tokens}; "
                "the caller must drop and count such prompts before rollout, never truncate them"
            )
        pixels = feature.get("pixel_values")
        grid = feature.get("image_grid_thw")
        prompts[rollout.group_id] = Prompt(
            input_ids=feature["input_ids"][0],
            mm_token_type_ids=feature["mm_token_type_ids"][0],
            pixel_values=pixels,
            image_grid_thw=grid,
        )
    return prompts


@dataclass(frozen=True)
class SequenceBatch:
    """Prompt + response rows, right-padded, with the response span located per row."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    mm_token_type_ids: torch.Tensor  # (B, L)
    pixel_values: torch.Tensor | None  # (patches of every image in the batch, D)
    image_grid_thw: torch.Tensor | None  # (images, 3)
    positions: torch.Tensor  # (B, R) index into L of the hidden state predicting each token
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R) 1 on real response tokens

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the model's forward."""
        inputs = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "mm_token_type_ids": self.mm_token_type_ids,
        }
        if self.pixel_values is not None and self.image_grid_thw is not None:
            inputs["pixel_values"] = self.pixel_values
            inputs["image_grid_thw"] = self.image_grid_thw
        return inputs

    def to(self, device: torch.device) -> SequenceBatch:
        """The same batch on `device`."""

        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return SequenceBatch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            mm_token_type_ids=self.mm_token_type_ids.to(device),
            pixel_values=move(self.pixel_values),
            image_grid_thw=move(self.image_grid_thw),
            positions=self.positions.to(device),
            response_ids=self.response_ids.to(device),
            response_mask=self.response_mask.to(device),
        )


def collate(
    prompts: Sequence[Prompt], responses: Sequence[torch.Tensor], *, pad_id: int
) -> SequenceBatch:
    """Rows `prompt_i + response_i`, right-padded with `pad_id` (never the image token)."""
    if not prompts or len(prompts) != len(responses):
        raise ValueError(f"collate: {len(prompts)} prompts for {len(responses)} responses")
    rows = len(prompts)
    width = max(p.input_ids.numel() + r.numel() for p, r in zip(prompts, responses, strict=True))
    span = max(r.numel() for r in responses)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)  # (B, L)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)  # (B, L)
    mm_token_type_ids = torch.zeros((rows, width), dtype=torch.long)  # (B, L)
    positions = torch.zeros((rows, span), dtype=torch.long)  # (B, R)
    response_ids = torch.full((rows, span), pad_id, dtype=torch.long)  # (B, R)
    response_mask = torch.zeros((rows, span), dtype=torch.long)  # (B, R)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        start, length = prompt.input_ids.numel(), response.numel()
        input_ids[row, :start] = prompt.input_ids
        input_ids[row, start : start + length] = response
        attention_mask[row, : start + length] = 1
        mm_token_type_ids[row, :start] = prompt.mm_token_type_ids
        # token start + t is predicted by the hidden state at start + t - 1; padding is clamped
        positions[row] = (torch.arange(span) + start - 1).clamp(max=width - 1)
        response_ids[row, :length] = response
        response_mask[row, :length] = 1
    pixels = [p.pixel_values for p in prompts if p.pixel_values is not None]
    grids = [p.image_grid_thw for p in prompts if p.image_grid_thw is not None]
    return SequenceBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        mm_token_type_ids=mm_token_type_ids,
        pixel_values=torch.cat(pixels) if pixels else None,
        image_grid_thw=torch.cat(grids) if grids else None,
        positions=positions,
        response_ids=response_ids,
        response_mask=response_mask,
    )


def plan_updates(
    group_ids: Sequence[str], included: Sequence[bool], updates: int
) -> list[list[int]]:
    """Sequence indices of each optimizer update: groups in order, split into `updates` runs.

    >>> plan_updates(["a", "a", "b", "b", "c", "c"], [True] * 4 + [False] * 2, 3)
    [[0, 1], [2, 3]]
    """
    groups = list(dict.fromkeys(group_ids))
    update_of = {g: k * updates // len(groups) for k, g in enumerate(groups)}
    plan: list[list[int]] = [[] for _ in range(updates)]
    for index, (group, keep) in enumerate(zip(group_ids, included, strict=True)):
        if keep:
            plan[update_of[group]].append(index)
    return [indices for indices in plan if indices]


def shard(indices: Sequence[int], size: int, rank: int, world: int) -> list[list[int]]:
    """This rank's micro-batches of `indices`; every rank gets the same count ([] = idle pass).

    >>> shard([0, 1, 2, 3, 4], 2, rank=1, world=2)
    [[1, 3], []]
    """
    mine = list(indices[rank::world])
    count = math.ceil(math.ceil(len(indices) / world) / size)
    return [mine[k * size : (k + 1) * size] for k in range(count)]


def pad_rows(rows: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Per-sequence `(R_i,)` tensors right-padded to `like`'s `(B, R)`; zeros for an idle pass."""
    if not rows:
        return torch.zeros_like(like)
    stacked = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, R)
    return stacked.to(like.dtype)
