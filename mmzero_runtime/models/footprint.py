"""How much memory a stage pod needs, from the model's config and the spec's sizes.

An estimate by parts, so that a spec that cannot fit its GPUs is refused before anything runs,
with the numbers: weights, gradients and AdamW state of the trained role, the frozen KL
reference, activations of one micro-batch (per layer: the checkpointed input when gradient
checkpointing is on, every intermediate when it is off), the fp32 LM-head chunk, and for each
in-process frozen role its weights and KV cache. Parameter counts are exact: the model is built
on the meta device (no memory, no weights read).

Assumptions, stated because they decide the figures: parameters, gradients and AdamW moments
in the training dtype (torch's AdamW keeps its state in the parameter dtype; DeepSpeed ZeRO-3
keeps fp32 master weights and moments, sharded over the GPUs of the trainer); one sequence is
`max_prompt_tokens + max_response_tokens` long; frozen roles generate
`rollout_batch_size x group_size` sequences at once. `benchmarks/RESULTS.md` ("Memory
estimate") records the error against measured peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForImageTextToText

from mmzero_runtime.spec import GRPOSpec

HEAD_CHUNK_TOKENS = 1024
"""Response positions per LM-head chunk (`training.logprobs.HEAD_CHUNK_TOKENS`)."""
GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a model that decide its memory."""

    parameters: int
    vision_parameters: int
    layers: int
    hidden: int
    intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int


def model_shape(config: Any) -> ModelShape:
    """Exact parameter counts (built on the meta device) and the text model's sizes."""
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)  # type: ignore[no-untyped-call]
    total = sum(p.numel() for p in model.parameters())
    vision = sum(
        p.numel()
        for name, p in model.named_parameters()
        if ".visual." in f".{name}" or "vision" in name
    )
    text = getattr(config, "text_config", None) or config
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    return ModelShape(
        parameters=total,
        vision_parameters=vision,
        layers=int(text.num_hidden_layers),
        hidden=int(text.hidden_size),
        intermediate=int(text.intermediate_size),
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=head_dim,
        vocab=int(text.vocab_size),
    )


@dataclass(frozen=True)
class Footprint:
    """Bytes by part; `total` is what one pod (or one GPU, for a sharded trainer) holds."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def __add__(self, other: Footprint) -> Footprint:
        merged = dict(self.parts)
        for name, size in other.parts.items():
            merged[name] = merged.get(name, 0) + size
        return Footprint(merged)

    def describe(self) -> str:
        """`total 12.3 GiB (weights 3.1, optimizer 6.2, ...)`."""
        shown = ", ".join(f"{k} {v / GIB:.2f}" for k, v in self.parts.items() if v)
        return f"{self.total / GIB:.2f} GiB ({shown})"


def trainer_footprint(
    shape: ModelShape, spec: GRPOSpec, *, dtype_bytes: int, shards: int = 1, zero: bool = False
) -> Footprint:
    """The trained role on one device: `shards` devices share weights and optimizer state
    under DeepSpeed ZeRO-3 (`zero`), each with its own activations."""
    trainable = shape.parameters - (shape.vision_parameters if spec.freeze_vision_tower else 0)
    b = dtype_bytes
    if zero:  # bf16 weights and gradients, fp32 master copy and two moments: 16 bytes/param
        states = {
            "weights": shape.parameters * b // shards,
            "gradients": trainable * b // shards,
            "optimizer": trainable * 12 // shards,
        }
    else:
        states = {
            "weights": shape.parameters * b,
            "gradients": trainable * b,
            "optimizer": trainable * 2 * b,
        }
    if spec.kl_coef > 0:
        states["reference"] = shape.parameters * b // (shards if zero else 1)
    tokens = spec.micro_batch_size * (spec.max_prompt_tokens + spec.max_response_tokens)
    width = 4 * shape.hidden + 3 * shape.intermediate  # q,k,v,o + gate, up, act of one layer
    if spec.gradient_checkpointing:  # each layer's input kept, one layer recomputed at a time
        activations = tokens * (shape.layers * shape.hidden + width) * b
    else:
        activations = tokens * shape.layers * width * b
    head_tokens = spec.micro_batch_size * min(spec.max_response_tokens, HEAD_CHUNK_TOKENS)
    states["activations"] = activations
    states["lm_head"] = head_tokens * shape.vocab * 4 * 2  # fp32 logits and their gradient
    return Footprint(states)


def generation_footprint(
    shape: ModelShape, *, sequences: int, tokens: int, dtype_bytes: int, name: str
) -> Footprint:
    """A frozen role generating `sequences` of up to `tokens` at once: weights and KV cache."""
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * dtype_bytes * sequences * tokens
    logits = sequences * shape.vocab * 4
    return Footprint({f"{name} weights": shape.parameters * dtype_bytes, f"{name} kv": kv + logits})
