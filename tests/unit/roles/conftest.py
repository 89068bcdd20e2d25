"""Fixtures for the roles tests: the tiny model's tokenizer, trained offline in a second.

`render_prompt` is tested against real transformers code with the same tokenizer and Qwen-style
chat template the tiny model ships (`models/tiny.py`), and once without a template, as a base
checkpoint may come.
"""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from mmzero_runtime.models.procedural import generate_items
from mmzero_runtime.models.tiny import train_tokenizer, wrap_tokenizer


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    return wrap_tokenizer(train_tokenizer(generate_items(20, seed=0)))


@pytest.fixture(scope="session")
def qwen_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer with its Qwen-style chat template."""
    return _tiny_tokenizer()


@pytest.fixture(scope="session")
def templateless_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer without any chat template."""
    tokenizer = _tiny_tokenizer()
    tokenizer.chat_template = None
    return tokenizer
