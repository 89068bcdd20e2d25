"""The untrained tiny Qwen2-VL: token ids, chat template, tokenizer, forward/backward, seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mmzero_runtime.models.inputs import encode
from mmzero_runtime.models.loading import LoadedVLM
from mmzero_runtime.models.procedural import generate_items
from mmzero_runtime.models.tiny import SPECIAL_TOKENS, TINY_IMAGE, build_tiny
from mmzero_runtime.roles import (
    build_proposer_messages,
    build_solver_messages,
    check_format,
    render_prompt,
)


def test_tiny_config_token_ids_equal_tokenizer_ids(tiny_vlm: LoadedVLM) -> None:
    config, tokenizer = tiny_vlm.model.config, tiny_vlm.processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert config.text_config.eos_token_id == ids["<|im_end|>"] == tokenizer.eos_token_id
    assert config.text_config.pad_token_id == ids["<|endoftext|>"] == tokenizer.pad_token_id
    assert config.text_config.vocab_size == len(tokenizer)


def test_tiny_model_size_few_million_parameters(tiny_vlm: LoadedVLM) -> None:
    count = sum(p.numel() for p in tiny_vlm.model.parameters())
    assert 1_000_000 < count < 10_000_000
    assert tiny_vlm.model.model.visual is not None  # the vision tower is part of it


def test_tiny_chat_template_solver_prompt_one_placeholder(tiny_vlm: LoadedVLM) -> None:
    text = render_prompt(tiny_vlm.processor, build_solver_messages("How many bars?"))
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    assert text.startswith("<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_tiny_tokenizer_think_tokens_survive_skip_special(tiny_vlm: LoadedVLM) -> None:
    # <think> is added but not special, so decoded Solver replies still pass check_format
    tokenizer = tiny_vlm.processor.tokenizer
    reply = "<think>3 bars</think> \\boxed{3}"
    ids = tokenizer(reply + "<|im_end|>")["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded == reply and check_format(decoded)


def test_tiny_tokenizer_round_trips_procedural_text(tiny_vlm: LoadedVLM) -> None:
    tokenizer = tiny_vlm.processor.tokenizer
    for item in generate_items(20, seed=7, offset=10_000):
        for text in (item.proposer_response, item.coder_response, item.hard.response):
            assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_tiny_forward_backward_with_image_finite(tiny_vlm: LoadedVLM) -> None:
    model = tiny_vlm.model
    image = Image.new("RGB", (320, 240), "white")
    batch = encode(tiny_vlm.processor, build_solver_messages("q"), [image], image_spec=TINY_IMAGE)
    model.zero_grad()
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    visual = [p.grad for p in model.model.visual.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in visual)  # pixels reach the loss
    model.zero_grad()


@pytest.mark.slow
def test_build_tiny_same_seed_identical_files(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    again = build_tiny(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "preprocessor_config.json"):
        assert (again / name).read_bytes() == (tiny_vlm_dir / name).read_bytes(), name


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_proposer_messages("chart and graph understanding"),  # topic + instruction
        lambda: build_solver_messages("How many bars are there?"),  # image + question + instr.
    ],
    ids=["proposer", "solver"],
)
def test_tiny_tokenizer_role_prompt_short(tiny_vlm: LoadedVLM, build: Any) -> None:
    # each fixed role instruction is one added token, so prompts stay a few dozen tokens
    text = render_prompt(tiny_vlm.processor, build())
    ids = tiny_vlm.processor.tokenizer(text)["input_ids"]
    assert len(ids) < 40


def test_tiny_tokenizer_numbers_and_words_split_alike_in_any_context(tiny_vlm: LoadedVLM) -> None:
    # merges never cross a word/number boundary, so "Oslo" and "42" are spelt the same everywhere
    tokenizer = tiny_vlm.processor.tokenizer
    alone = tokenizer.tokenize(" Oslo 42")
    in_caption = tokenizer.tokenize("bars: Oslo 42 (red)")
    assert "".join(alone) in "".join(in_caption)
    assert all(piece in in_caption for piece in alone)
