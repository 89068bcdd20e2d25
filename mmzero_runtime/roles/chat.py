"""Chat messages for the three roles, and the one function that renders them into model input.

Training, serving and evaluation all call `render_prompt`, so the prompt text cannot drift between
them: no hand-written `<|im_start|>` strings anywhere (fixes reference §13.15 / §3.4).
Messages use the transformers multimodal chat format; image parts carry no pixels, the
processor receives the images separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypedDict

from mmzero_runtime.roles.errors import ChatTemplateError


class TextPart(TypedDict):
    """A text content part."""

    type: Literal["text"]
    text: str


class ImagePart(TypedDict):
    """An image placeholder part; the chat template turns it into the vision tokens."""

    type: Literal["image"]


ContentPart = TextPart | ImagePart


class ChatMessage(TypedDict):
    """One chat turn in the transformers multimodal format."""

    role: Literal["system", "user", "assistant"]
    content: list[ContentPart]


class ChatTemplater(Protocol):
    """What `render_prompt` needs: a transformers tokenizer or processor."""

    @property
    def chat_template(self) -> object: ...

    def apply_chat_template(
        self, conversation: Any, *, tokenize: bool, add_generation_prompt: bool
    ) -> object: ...


def text_part(text: str) -> TextPart:
    """A text content part."""
    return {"type": "text", "text": text}


def image_part() -> ImagePart:
    """An image placeholder content part."""
    return {"type": "image"}


def user_turn(*parts: ContentPart) -> list[ChatMessage]:
    """A conversation of one user turn: every role prompt has this shape (no system prompt, §3)."""
    return [{"role": "user", "content": list(parts)}]


def render_prompt(templater: ChatTemplater, messages: Sequence[ChatMessage]) -> str:
    """Render messages with the model's own chat template, ending with the assistant prompt.

    Raises ChatTemplateError when `templater` has no chat template (a base checkpoint, or a
    tokenizer built by hand) instead of letting a hand-written template creep back in.
    """
    name = type(templater).__name__
    if not templater.chat_template:
        raise ChatTemplateError(
            f"{name} has no chat template, so role prompts cannot be rendered; load a "
            "checkpoint that ships one (chat_template.jinja or tokenizer_config.json) or set "
            "its chat_template attribute before building prompts"
        )
    rendered = templater.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True
    )
    if not isinstance(rendered, str):
        raise ChatTemplateError(
            f"{name}.apply_chat_template(tokenize=False) returned {type(rendered).__name__}, "
            "not the prompt text; check the installed transformers version"
        )
    return rendered
