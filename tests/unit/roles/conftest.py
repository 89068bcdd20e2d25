"""Fixtures for the roles tests: a tiny Qwen-style tokenizer built offline (rl-anchors §6.2).

The builder trains a byte-level BPE on a few strings with Qwen's special tokens and wraps it in
a transformers fast tokenizer with a minimal Qwen-style chat template, so `render_prompt` is
tested against real transformers code without any hub download. The lead may move it once the
tiny model lands.
"""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
)

# Qwen-style: one <|im_start|>role ... <|im_end|> block per turn, image parts become the
# vision placeholder, and the generation prompt opens the assistant turn.
QWEN_STYLE_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_CORPUS = (
    "<caption>A grouped bar chart of rainfall in three cities</caption>",
    "<easy_question>What is the tallest bar?</easy_question><easy_answer>42</easy_answer>",
    '```svg\n<svg viewBox="0 0 800 600"><rect width="800" height="600" fill="white"/></svg>\n```',
    "<think>The red bar reads 40, the blue one 25, so 15.</think> \\boxed{15}",
)


def build_tiny_tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    """A fast tokenizer over a byte-level BPE trained here, with the given chat template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    # transformers 5.x accepts a plain fast tokenizer everywhere; 4.57's Qwen processors want
    # Qwen2TokenizerFast (rl-anchors §6.2), which takes the same arguments.
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        chat_template=chat_template,
    )


@pytest.fixture(scope="session")
def qwen_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer with the Qwen-style chat template."""
    return build_tiny_tokenizer(QWEN_STYLE_TEMPLATE)


@pytest.fixture(scope="session")
def templateless_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer without any chat template, as a base checkpoint would ship."""
    return build_tiny_tokenizer(None)
