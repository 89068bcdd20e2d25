"""An untrained tiny but real Qwen2-VL, built offline in seconds (rl-anchors §6.2).

A byte-level BPE tokenizer is trained on procedural items (each fixed role instruction is one
added token), with Qwen's special tokens, `<think>`/`</think>` and a Qwen-style chat template;
the config's vision token ids are the tokenizer's; the image processor is the PIL one, so
torchvision is not needed (`processor.py`). The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

from mmzero_runtime.models.procedural import ChartItem, generate_items
from mmzero_runtime.roles import (
    CODER_INSTRUCTION,
    PROPOSER_INSTRUCTION,
    SOLVER_INSTRUCTION,
    proposal_block,
)
from mmzero_runtime.spec import ImageSpec

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""Qwen's control tokens; skipped when decoding with `skip_special_tokens=True`."""

THINK_TOKENS = ("<think>", "</think>")
"""Added but not special: a decoded Solver reply keeps them, as `roles.check_format` needs."""

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""Qwen's layout without a default system prompt; images become one `<|image_pad|>`."""

VOCAB_SIZE = 1536
"""BPE size limit; the corpus converges below it (whole words and frequent numbers)."""

CORPUS_ITEMS = 500
"""Procedural items the tokenizer is trained on (the seed's stream, the warm-start's own items)."""

SPLIT_PATTERN = (
    r"https?://[^\"\s]+"  # the SVG namespace URL, one token after merging
    r"| ?\p{L}[\p{L}\p{N}\-]*=\""  # attribute openers: ` x="`, ` font-size="`, ` y1="`
    r"|(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenizer pattern with whole numbers, plus the two SVG rules first."""

TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    # sum(mrope_section) must be head_dim / 2 = 192 / 4 / 2, split 1:1.5:1.5 like Qwen2-VL's
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [6, 9, 9]},
}
VISION_CONFIG: dict[str, Any] = {
    "depth": 2,
    "embed_dim": 64,
    "hidden_size": 192,  # the merger's output: the text hidden size
    "num_heads": 4,
    "mlp_ratio": 4,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
TINY_IMAGE = ImageSpec(min_pixels=3136, max_pixels=37632)
"""The budget saved with the processor: examples/run.yaml's tiny profile, 48 image tokens."""


def role_texts(item: ChartItem) -> list[str]:
    """The variable text an item contributes: prompts without the role instructions, replies."""
    prompts = [
        "user\n",  # the chat template's role lines
        "assistant\n",
        item.topic,
        proposal_block(item.proposal),
        item.easy.question,
        item.hard.question,
    ]
    targets = [item.proposer_response, item.coder_response, item.easy.response, item.hard.response]
    return prompts + targets


def train_tokenizer(items: list[ChartItem], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE with a Qwen-like split (words, numbers, punctuation runs, plus SVG
    attribute openers such as ` fill="` and URLs kept whole), trained on the items' texts.

    Merges never cross a split, so a word or number has one spelling in every context, which a
    model of a few million parameters needs to learn in minutes. Each role instruction is one
    added token: it is fixed text (its hash is in the cache key), and as one token the prompts
    stay short on a CPU.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([text for item in items for text in role_texts(item)], trainer)
    fixed = (*THINK_TOKENS, PROPOSER_INSTRUCTION, CODER_INSTRUCTION, SOLVER_INSTRUCTION)
    tokenizer.add_tokens([AddedToken(text, normalized=False, special=False) for text in fixed])
    return tokenizer


def wrap_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers tokenizer: `<|im_end|>` ends a turn, `<|endoftext|>` pads."""
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=TEXT_CONFIG["max_position_embeddings"],
    )


def token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token of the vocabulary."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"token {token!r} has ids {found!r}, expected one id")
    return found


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    """The model config with every token id taken from `tokenizer` (rl-anchors §6.2 step 3)."""
    ids = {token: token_id(tokenizer, token) for token in SPECIAL_TOKENS}
    text = {
        **TEXT_CONFIG,
        "vocab_size": len(tokenizer),
        "bos_token_id": None,
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    return Qwen2VLConfig(
        text_config=text,
        vision_config=VISION_CONFIG,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def tiny_image_processor() -> Qwen2VLImageProcessorPil:
    """The PIL image processor (no torchvision) with the tiny profile's budget."""
    return Qwen2VLImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE.min_pixels, "longest_edge": TINY_IMAGE.max_pixels},
        patch_size=VISION_CONFIG["patch_size"],
        temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
        merge_size=VISION_CONFIG["spatial_merge_size"],
    )


def build_tiny(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build and save the untrained tiny Qwen2-VL with its tokenizer and processor in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = wrap_tokenizer(train_tokenizer(generate_items(CORPUS_ITEMS, seed=seed)))
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = token_id(tokenizer, "<|im_end|>")
    model.generation_config.pad_token_id = token_id(tokenizer, "<|endoftext|>")
    model.save_pretrained(out)
    # Saved as parts, not as a processor: the dir stays loadable by stock AutoProcessor where
    # torchvision is installed, and by `load_processor` everywhere.
    tokenizer.save_pretrained(out)
    tiny_image_processor().save_pretrained(out)
    (out / "mmzero_tiny.json").write_text(json.dumps({"seed": seed}, indent=1) + "\n")
    return out
