"""`render_prompt` against a real transformers tokenizer built offline (reference §3.4, §13.15)."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from mmzero_runtime.roles import (
    ChatMessage,
    ChatTemplateError,
    Proposal,
    build_coder_messages,
    build_proposer_messages,
    build_solver_messages,
    render_prompt,
)

# transformers renders chat templates with jinja2, an optional dependency of transformers.
pytest.importorskip("jinja2", reason="jinja2 is needed by apply_chat_template")

PROPOSAL = Proposal("Bars.", "Which is red?", "B", "How far apart?", "3", "data_chart")
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
GENERATION_PROMPT = "<|im_end|>\n<|im_start|>assistant\n"

ROLE_MESSAGES = [
    # text-only Proposer prompt
    pytest.param(build_proposer_messages("spatial and geometric reasoning"), 0, id="proposer"),
    # text-only Coder prompt
    pytest.param(build_coder_messages(PROPOSAL), 0, id="coder"),
    # the Solver prompt carries one image
    pytest.param(build_solver_messages("Which bar is red?"), 1, id="solver"),
]


@pytest.mark.parametrize(("messages", "images"), ROLE_MESSAGES)
def test_render_prompt_role_messages_one_placeholder_per_image(
    qwen_tokenizer: PreTrainedTokenizerFast, messages: list[ChatMessage], images: int
) -> None:
    rendered = render_prompt(qwen_tokenizer, messages)
    assert rendered.count(IMAGE_PLACEHOLDER) == images
    image_pad = qwen_tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert qwen_tokenizer(rendered)["input_ids"].count(image_pad) == images


@pytest.mark.parametrize(("messages", "images"), ROLE_MESSAGES)
def test_render_prompt_role_messages_ends_with_generation_prompt(
    qwen_tokenizer: PreTrainedTokenizerFast, messages: list[ChatMessage], images: int
) -> None:
    rendered = render_prompt(qwen_tokenizer, messages)
    assert rendered.startswith("<|im_start|>user\n")
    assert rendered.endswith(GENERATION_PROMPT)


def test_render_prompt_solver_message_places_image_before_question(
    qwen_tokenizer: PreTrainedTokenizerFast,
) -> None:
    rendered = render_prompt(qwen_tokenizer, build_solver_messages("Which bar is red?"))
    assert rendered.startswith(f"<|im_start|>user\n{IMAGE_PLACEHOLDER}Which bar is red?\n\n")


@pytest.mark.parametrize(("messages", "images"), ROLE_MESSAGES)
def test_render_prompt_same_messages_byte_identical(
    qwen_tokenizer: PreTrainedTokenizerFast, messages: list[ChatMessage], images: int
) -> None:
    first = render_prompt(qwen_tokenizer, messages).encode()
    assert all(render_prompt(qwen_tokenizer, messages).encode() == first for _ in range(3))


def test_render_prompt_no_chat_template_raises_clear_error(
    templateless_tokenizer: PreTrainedTokenizerFast,
) -> None:
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        render_prompt(templateless_tokenizer, build_solver_messages("Which bar is red?"))
