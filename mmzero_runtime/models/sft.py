"""Supervised fine-tuning on procedural examples of all three roles (the tiny model's warm start).

Every example goes through `inputs.encode`, the same template and pixel path as rollout and
training; the response is tokenised on its own and appended (never re-tokenising prompt +
response, which would merge tokens across the boundary), and only response tokens count in
the loss. One batch holds one role, so padding stays small.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from mmzero_runtime.models.inputs import ImageInput, encode
from mmzero_runtime.models.procedural import ChartItem
from mmzero_runtime.roles import (
    ChatMessage,
    build_coder_messages,
    build_proposer_messages,
    build_solver_messages,
)
from mmzero_runtime.spec import ImageSpec

log = logging.getLogger(__name__)

Role = Literal["proposer", "coder", "solver"]
IGNORE = -100
"""Label of tokens that do not count in the loss (prompt and padding)."""


@dataclass(frozen=True)
class Example:
    """One supervised example: a role's conversation, its images and the target reply."""

    role: Role
    messages: list[ChatMessage]
    images: tuple[ImageInput, ...]
    response: str


def role_examples(
    items: Sequence[ChartItem], pngs: Mapping[str, ImageInput]
) -> dict[Role, list[Example]]:
    """Proposer, Coder and Solver examples of `items`; Solver ones only for rendered items."""
    examples: dict[Role, list[Example]] = {"proposer": [], "coder": [], "solver": []}
    for item in items:
        examples["proposer"].append(
            Example("proposer", build_proposer_messages(item.topic), (), item.proposer_response)
        )
        examples["coder"].append(
            Example("coder", build_coder_messages(item.proposal), (), item.coder_response)
        )
        if item.id not in pngs:
            continue
        for target in (item.easy, item.hard):
            messages = build_solver_messages(target.question)
            examples["solver"].append(
                Example("solver", messages, (pngs[item.id],), target.response)
            )
    return examples


def collate(processor: Any, examples: Sequence[Example], image_spec: ImageSpec) -> dict[str, Any]:
    """Right-padded prompt + response ids with labels on the response (and its `<|im_end|>`)."""
    tokenizer = processor.tokenizer
    rows: list[tuple[list[int], list[int], list[int]]] = []
    pixels, grids = [], []
    for example in examples:
        prompt = encode(processor, example.messages, example.images, image_spec=image_spec)
        reply = tokenizer(example.response + tokenizer.eos_token, add_special_tokens=False)
        prompt_ids, reply_ids = prompt["input_ids"][0].tolist(), list(reply["input_ids"])
        mm = prompt["mm_token_type_ids"][0].tolist() + [0] * len(reply_ids)
        rows.append((prompt_ids + reply_ids, [IGNORE] * len(prompt_ids) + reply_ids, mm))
        if "pixel_values" in prompt:
            pixels.append(prompt["pixel_values"])
            grids.append(prompt["image_grid_thw"])
    width = max(len(ids) for ids, _, _ in rows)
    pad = tokenizer.pad_token_id

    def padded(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (width - len(values))

    batch: dict[str, Any] = {
        "input_ids": torch.tensor([padded(ids, pad) for ids, _, _ in rows]),
        "attention_mask": torch.tensor([padded([1] * len(ids), 0) for ids, _, _ in rows]),
        "labels": torch.tensor([padded(labels, IGNORE) for _, labels, _ in rows]),
        "mm_token_type_ids": torch.tensor([padded(mm, 0) for _, _, mm in rows]),
    }
    if pixels:
        batch["pixel_values"] = torch.cat(pixels)
        batch["image_grid_thw"] = torch.cat(grids)
    return batch


def learning_rate(step: int, *, peak: float, warmup: int, total: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to 10 % of it.

    >>> [round(learning_rate(s, peak=1.0, warmup=2, total=4), 3) for s in range(4)]
    [0.5, 1.0, 1.0, 0.1]
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _length(example: Example) -> int:
    """Characters of prompt text and reply: a cheap proxy for the token count."""
    prompt = sum(
        len(part["text"]) for part in example.messages[0]["content"] if part["type"] == "text"
    )
    return prompt + len(example.response)


def _epoch(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """One shuffled pass in batches of similar length (windows of 16 batches), in random order."""
    order = list(examples)
    rng.shuffle(order)
    window = batch_size * 16
    out: list[list[Example]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=_length)
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def batches(
    examples: dict[Role, list[Example]], cycle: Sequence[Role], batch_size: int, seed: int
) -> Iterator[list[Example]]:
    """Endless single-role batches, roles in `cycle` order, each role reshuffled every epoch."""
    rng = random.Random(seed)
    queues: dict[Role, list[list[Example]]] = {role: [] for role in examples}
    while True:
        for role in cycle:
            if not queues[role]:
                queues[role] = _epoch(examples[role], batch_size, rng)
            yield queues[role].pop()


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser settings of one SFT run."""

    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    role_cycle: tuple[Role, ...]
    seed: int


def train(
    model: Any,
    processor: Any,
    examples: dict[Role, list[Example]],
    settings: TrainSettings,
    image_spec: ImageSpec,
) -> list[float]:
    """Fine-tune `model` in place with AdamW; returns the loss of every step."""
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    stream = batches(examples, settings.role_cycle, settings.batch_size, settings.seed)
    losses: list[float] = []
    model.train()
    started = time.monotonic()
    for step in range(settings.steps):
        lr = learning_rate(
            step, peak=settings.learning_rate, warmup=settings.warmup_steps, total=settings.steps
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = collate(processor, next(stream), image_spec)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        if step % 20 == 0 or step == settings.steps - 1:
            log.info(
                "warm-start step=%d loss=%.3f lr=%.2e elapsed_s=%.0f",
                step, losses[-1], lr, time.monotonic() - started,
            )  # fmt: skip
    model.eval()
    return losses
