"""What a model does with each role's prompt, sampled at temperature 1.0 with plain `generate`.

Shares measured after the warm start (and usable on any checkpoint): Proposer replies that
parse with all six tags, Coder replies whose SVG extracts and renders in the sandbox, Solver
replies that are well formatted and correct on held-out procedural items. Rewards vary within
GRPO groups from the first step only if these shares are neither 0 nor 1 (rl-anchors §2.6.1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmzero_runtime.models.inputs import ImageInput, encode_batch
from mmzero_runtime.models.procedural import HELD_OUT_OFFSET, generate_items
from mmzero_runtime.render import Renderer
from mmzero_runtime.roles import (
    ChatMessage,
    Proposal,
    build_coder_messages,
    build_proposer_messages,
    build_solver_messages,
    check_format,
    extract_boxed,
    extract_svg,
    parse_proposal,
)
from mmzero_runtime.spec import SEED_TOPICS, ImageSpec

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = {"proposer": 320, "coder": 560, "solver": 96}
"""Response limits of the tiny profile (examples/run.yaml)."""


@dataclass(frozen=True)
class Share:
    """`hits` out of `total`."""

    hits: int
    total: int

    @property
    def ratio(self) -> float:
        return self.hits / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.hits}/{self.total}"


@dataclass(frozen=True)
class ProbeResult:
    """The measured shares, and the Solver's correct share per question skill."""

    proposer_parsed: Share
    coder_rendered: Share
    solver_formatted: Share
    solver_correct: Share
    solver_correct_by_skill: dict[str, Share] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """JSON-ready: each share as hits, total and ratio."""

        def one(share: Share) -> dict[str, Any]:
            return {"hits": share.hits, "total": share.total, "ratio": round(share.ratio, 4)}

        return {
            "proposer_parsed": one(self.proposer_parsed),
            "coder_rendered": one(self.coder_rendered),
            "solver_formatted": one(self.solver_formatted),
            "solver_correct": one(self.solver_correct),
            "solver_correct_by_skill": {
                skill: one(share) for skill, share in sorted(self.solver_correct_by_skill.items())
            },
        }


def sample(
    model: Any,
    processor: Any,
    conversations: Sequence[Sequence[ChatMessage]],
    images: Sequence[Sequence[ImageInput]],
    *,
    image_spec: ImageSpec,
    max_new_tokens: int,
    chunk: int = 16,
) -> list[str]:
    """One reply per conversation, sampled at temperature 1.0 (no top-k, no top-p)."""
    replies: list[str] = []
    tokenizer = processor.tokenizer
    for start in range(0, len(conversations), chunk):
        batch = encode_batch(
            processor,
            conversations[start : start + chunk],
            images[start : start + chunk],
            image_spec=image_spec,
        )
        with torch.no_grad():
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        replies.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return replies


def _text_only(conversations: list[list[ChatMessage]]) -> list[tuple[ImageInput, ...]]:
    return [() for _ in conversations]


def probe_proposer(
    model: Any, processor: Any, count: int, image_spec: ImageSpec
) -> tuple[Share, list[Proposal]]:
    """Proposer replies for `count` prompts cycling over the seed topics, and those that parse."""
    conversations = [
        build_proposer_messages(SEED_TOPICS[i % len(SEED_TOPICS)]) for i in range(count)
    ]
    replies = sample(
        model, processor, conversations, _text_only(conversations),
        image_spec=image_spec, max_new_tokens=MAX_NEW_TOKENS["proposer"],
    )  # fmt: skip
    parsed = [p for p in map(parse_proposal, replies) if isinstance(p, Proposal)]
    return Share(len(parsed), count), parsed


def probe_coder(
    model: Any,
    processor: Any,
    proposals: Sequence[Proposal],
    samples_each: int,
    renderer: Renderer,
    image_spec: ImageSpec,
) -> Share:
    """Coder replies (`samples_each` per proposal) whose SVG extracts and renders."""
    conversations = [build_coder_messages(p) for p in proposals for _ in range(samples_each)]
    replies = sample(
        model, processor, conversations, _text_only(conversations),
        image_spec=image_spec, max_new_tokens=MAX_NEW_TOKENS["coder"],
    )  # fmt: skip
    svgs = [(f"probe-coder-{i}", extract_svg(reply).code) for i, reply in enumerate(replies)]
    extracted = [(key, code) for key, code in svgs if code]
    rendered = renderer.render_many(extracted) if extracted else []
    return Share(sum(result.ok for result in rendered), len(replies))


def _correct(reply: str, answer: str) -> bool:
    boxed = extract_boxed(reply)
    return boxed is not None and boxed.casefold() == answer.casefold()


def probe_solver(
    model: Any,
    processor: Any,
    item_count: int,
    seed: int,
    renderer: Renderer,
    image_spec: ImageSpec,
) -> tuple[Share, Share, dict[str, Share]]:
    """Formatted and correct Solver replies to the easy and hard questions of held-out items."""
    items = generate_items(item_count, seed=seed, offset=HELD_OUT_OFFSET)
    renders = renderer.render_many([(item.id, item.svg) for item in items])
    targets = [
        (render.png, target)
        for item, render in zip(items, renders, strict=True)
        if render.png is not None
        for target in (item.easy, item.hard)
    ]
    replies = sample(
        model, processor,
        [build_solver_messages(target.question) for _, target in targets],
        [(png,) for png, _ in targets],
        image_spec=image_spec, max_new_tokens=MAX_NEW_TOKENS["solver"],
    )  # fmt: skip
    formatted = sum(map(check_format, replies))
    hits = [
        _correct(reply, target.answer) for reply, (_, target) in zip(replies, targets, strict=True)
    ]
    by_skill: dict[str, Share] = {}
    for hit, (_, target) in zip(hits, targets, strict=True):
        old = by_skill.get(target.skill, Share(0, 0))
        by_skill[target.skill] = Share(old.hits + hit, old.total + 1)
    return Share(formatted, len(replies)), Share(sum(hits), len(replies)), by_skill


def probe(
    model: Any,
    processor: Any,
    renderer: Renderer,
    image_spec: ImageSpec,
    *,
    proposals: int,
    coder_samples: int,
    solver_items: int,
    seed: int,
) -> ProbeResult:
    """All three roles; the Coder draws the Proposer's own parsed proposals (tiny-model-notes)."""
    torch.manual_seed(seed)
    proposer_parsed, parsed = probe_proposer(model, processor, proposals, image_spec)
    coder_rendered = probe_coder(model, processor, parsed, coder_samples, renderer, image_spec)
    formatted, correct, by_skill = probe_solver(
        model, processor, solver_items, seed, renderer, image_spec
    )
    result = ProbeResult(proposer_parsed, coder_rendered, formatted, correct, by_skill)
    log.info(
        "probed model proposer_parsed=%s coder_rendered=%s solver_formatted=%s solver_correct=%s",
        proposer_parsed, coder_rendered, formatted, correct,
    )  # fmt: skip
    return result
