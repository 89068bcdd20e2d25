"""The memory estimate by parts: exact parameter counts, and each part moving with its knob."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModelForImageTextToText

from mmzero_runtime.models.footprint import (
    generation_footprint,
    model_shape,
    trainer_footprint,
)
from mmzero_runtime.spec import GRPOSpec


def test_parameter_counts_are_exact_without_loading_weights(tiny_vlm_dir: Path) -> None:
    shape = model_shape(AutoConfig.from_pretrained(tiny_vlm_dir))
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    visual = sum(p.numel() for p in model.model.visual.parameters())
    assert shape.vision_parameters == visual
    assert (shape.layers, shape.hidden, shape.vocab) == (
        4,
        192,
        model.config.text_config.vocab_size,
    )


def test_each_part_follows_its_setting(tiny_vlm_dir: Path) -> None:
    shape = model_shape(AutoConfig.from_pretrained(tiny_vlm_dir))
    base = GRPOSpec(micro_batch_size=2, max_prompt_tokens=512, max_response_tokens=256)
    plain = trainer_footprint(shape, base, dtype_bytes=2).parts
    assert plain["weights"] == shape.parameters * 2 == plain["reference"]
    assert plain["optimizer"] == 2 * plain["gradients"]

    doubled = trainer_footprint(
        shape, base.model_copy(update={"micro_batch_size": 4}), dtype_bytes=2
    )
    assert doubled.parts["activations"] == 2 * plain["activations"]
    frozen = trainer_footprint(
        shape, base.model_copy(update={"freeze_vision_tower": True}), dtype_bytes=2
    )
    assert frozen.parts["gradients"] == (shape.parameters - shape.vision_parameters) * 2
    no_kl = trainer_footprint(shape, base.model_copy(update={"kl_coef": 0.0}), dtype_bytes=2)
    assert "reference" not in no_kl.parts
    sharded = trainer_footprint(shape, base, dtype_bytes=2, shards=4, zero=True).parts
    assert sharded["optimizer"] == shape.parameters * 12 // 4
    assert sharded["activations"] == plain["activations"]  # each GPU runs its own micro-batch


def test_kv_cache_grows_with_sequences_and_tokens(tiny_vlm_dir: Path) -> None:
    shape = model_shape(AutoConfig.from_pretrained(tiny_vlm_dir))
    one = generation_footprint(shape, sequences=1, tokens=1000, dtype_bytes=2, name="coder")
    many = generation_footprint(shape, sequences=8, tokens=1000, dtype_bytes=2, name="coder")
    per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2
    assert many.parts["coder kv"] - one.parts["coder kv"] == 7 * (
        1000 * per_token + shape.vocab * 4
    )
    assert (one + many).parts["coder weights"] == 2 * shape.parameters * 2
