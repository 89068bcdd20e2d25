"""THE preprocessing path: chat messages + images -> model inputs, for every caller.

Rollout, training, serving and evaluation all call `encode` (or `encode_batch`), so the chat
template (`roles.render_prompt`), the image loading and the pixel budget (`ImageSpec`) cannot
drift between them; that drift is the classic "image features and image tokens do not match"
failure (rl-anchors §2.6 item 6). Prompts are never truncated: a prompt that is too long is
the caller's to drop and count (`GRPOSpec.max_prompt_tokens`), never to cut.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature
from transformers.image_utils import SizeDict

from mmzero_runtime.models.errors import InputError
from mmzero_runtime.roles import ChatMessage, render_prompt
from mmzero_runtime.spec import ImageSpec

ImageInput = str | Path | bytes | Image.Image
"""A PNG path, PNG bytes (a `RenderResult.png`) or a PIL image."""

IMAGE_TOKEN = "<|image_pad|>"
"""The placeholder the chat template writes once per image; the processor expands it."""


def configure_processor(processor: Any, image_spec: ImageSpec) -> None:
    """Set the processor's pixel budget to `image_spec` (transformers 5.x `size` keys).

    Qwen's smart_resize reads `shortest_edge` as the minimum and `longest_edge` as the maximum
    pixel count (not edge lengths), so both come straight from the one budget (§13.14).
    """
    processor.image_processor.size = SizeDict(
        shortest_edge=image_spec.min_pixels, longest_edge=image_spec.max_pixels
    )


def load_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image. Renders are already composited on white, so RGB conversion is safe."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    source = io.BytesIO(image) if isinstance(image, bytes) else image
    with Image.open(source) as opened:
        return opened.convert("RGB")


def _pixel_kwargs(image_spec: ImageSpec) -> dict[str, Any]:
    """Per-call budget, so a processor configured elsewhere cannot change the pixels."""
    return {"size": {"shortest_edge": image_spec.min_pixels, "longest_edge": image_spec.max_pixels}}


def _check_placeholders(index: int, text: str, images: Sequence[ImageInput]) -> None:
    found = text.count(IMAGE_TOKEN)
    if found != len(images):
        raise InputError(
            f"conversation {index}: the rendered prompt has {found} image placeholder(s) but "
            f"{len(images)} image(s) were given; pass one image per image part of the messages"
        )


def encode_batch(
    processor: Any,
    conversations: Sequence[Sequence[ChatMessage]],
    images: Sequence[Sequence[ImageInput]],
    *,
    image_spec: ImageSpec,
) -> BatchFeature:
    """Tokenised prompts (left-padded, ending with the assistant turn) and their pixels.

    `images[i]` holds the images of `conversations[i]`, in the order of its image parts. The
    result has `input_ids`, `attention_mask`, `mm_token_type_ids` and, when there are images,
    `pixel_values` and `image_grid_thw` (transformers 5.2x needs `mm_token_type_ids` in forward
    whenever pixels are passed, tiny-model-notes).
    """
    if len(conversations) != len(images):
        raise InputError(
            f"got {len(conversations)} conversations but {len(images)} image lists; "
            "give one (possibly empty) image list per conversation"
        )
    texts = [render_prompt(processor, messages) for messages in conversations]
    for index, (text, own) in enumerate(zip(texts, images, strict=True)):
        _check_placeholders(index, text, own)
    pil = [load_image(image) for own in images for image in own]
    batch: BatchFeature = processor(
        text=texts,
        images=pil or None,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        truncation=False,
        **_pixel_kwargs(image_spec),
    )
    if "mm_token_type_ids" not in batch:  # returned by 5.x processors; derived for others
        image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        batch["mm_token_type_ids"] = (batch["input_ids"] == image_id).to(torch.long)
    return batch


def encode(
    processor: Any,
    messages: Sequence[ChatMessage],
    images: Sequence[ImageInput] = (),
    *,
    image_spec: ImageSpec,
) -> BatchFeature:
    """One conversation as a batch of one: see `encode_batch`."""
    return encode_batch(processor, [messages], [images], image_spec=image_spec)
