"""`encode`: the one preprocessing path (chat template, images, pixel budget, no truncation)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmzero_runtime.models.errors import InputError
from mmzero_runtime.models.inputs import configure_processor, encode, encode_batch
from mmzero_runtime.models.loading import LoadedVLM
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.spec import ImageSpec


def _chart(mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (320, 240), "white")
    image.paste((200, 30, 30) if mode == "RGB" else (200, 30, 30, 255), (40, 80, 90, 200))
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_encode_identical_inputs_identical_ids(tiny_vlm: LoadedVLM) -> None:
    messages = build_solver_messages("How many bars are there?")
    first = encode(tiny_vlm.processor, messages, [_chart()], image_spec=TINY_IMAGE)
    second = encode(tiny_vlm.processor, messages, [_chart()], image_spec=TINY_IMAGE)
    assert torch.equal(first["input_ids"], second["input_ids"])
    assert torch.equal(first["pixel_values"], second["pixel_values"])


@pytest.mark.parametrize(
    "kind",
    [
        "path",  # a PNG on disk, as the render stage stores it
        "bytes",  # RenderResult.png
        "pil",  # an image already in memory
    ],
)
def test_encode_image_sources_same_pixels(tiny_vlm: LoadedVLM, tmp_path: Path, kind: str) -> None:
    png = _png(_chart())
    path = tmp_path / "chart.png"
    path.write_bytes(png)
    source = {"path": path, "bytes": png, "pil": Image.open(io.BytesIO(png))}[kind]
    messages = build_solver_messages("q")
    reference = encode(tiny_vlm.processor, messages, [_chart()], image_spec=TINY_IMAGE)
    got = encode(tiny_vlm.processor, messages, [source], image_spec=TINY_IMAGE)
    assert torch.equal(got["pixel_values"], reference["pixel_values"])


def test_encode_rgba_image_converted_to_rgb(tiny_vlm: LoadedVLM) -> None:
    # the render sandbox composites on white; an RGBA input must not add a channel or fail
    messages = build_solver_messages("q")
    got = encode(tiny_vlm.processor, messages, [_chart("RGBA")], image_spec=TINY_IMAGE)
    reference = encode(tiny_vlm.processor, messages, [_chart()], image_spec=TINY_IMAGE)
    assert torch.equal(got["pixel_values"], reference["pixel_values"])


def test_encode_solver_prompt_one_placeholder_expands_to_budget(tiny_vlm: LoadedVLM) -> None:
    # 320 x 240 under 3,136..37,632 px resizes to 224 x 168 = 8 x 6 merged patches = 48 tokens
    processor = tiny_vlm.processor
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    batch = encode(processor, build_solver_messages("q"), [_chart()], image_spec=TINY_IMAGE)
    assert (batch["input_ids"] == image_id).sum().item() == 48
    assert batch["mm_token_type_ids"].sum().item() == 48
    assert batch["image_grid_thw"].tolist() == [[1, 12, 16]]


def test_encode_smaller_budget_fewer_image_tokens(tiny_vlm: LoadedVLM) -> None:
    # 3,136..12,544 px: 112 x 84 -> 4 x 3 merged patches = 12 tokens
    budget = ImageSpec(min_pixels=3136, max_pixels=12544)
    batch = encode(tiny_vlm.processor, build_solver_messages("q"), [_chart()], image_spec=budget)
    assert batch["mm_token_type_ids"].sum().item() == 12


def test_encode_placeholder_image_mismatch_raises_input_error(tiny_vlm: LoadedVLM) -> None:
    with pytest.raises(InputError, match="1 image placeholder"):
        encode(tiny_vlm.processor, build_solver_messages("q"), [], image_spec=TINY_IMAGE)


def test_encode_text_only_prompt_has_no_pixels(tiny_vlm: LoadedVLM) -> None:
    batch = encode(tiny_vlm.processor, build_proposer_messages("t"), image_spec=TINY_IMAGE)
    assert "pixel_values" not in batch
    assert batch["mm_token_type_ids"].sum().item() == 0


def test_encode_long_prompt_not_truncated(tiny_vlm: LoadedVLM) -> None:
    processor = tiny_vlm.processor
    topic = "bars " * (processor.tokenizer.model_max_length + 10)
    batch = encode(processor, build_proposer_messages(topic), image_spec=TINY_IMAGE)
    assert batch["input_ids"].shape[1] > processor.tokenizer.model_max_length


def test_encode_batch_prompts_left_padded(tiny_vlm: LoadedVLM) -> None:
    # generation appends on the right, so padding goes on the left
    conversations = [build_proposer_messages("a"), build_solver_messages("longer question")]
    batch = encode_batch(tiny_vlm.processor, conversations, [[], [_chart()]], image_spec=TINY_IMAGE)
    mask = batch["attention_mask"]
    assert mask[0].sum() != mask[1].sum()  # the two prompts differ in length
    for row in mask.tolist():
        assert row == sorted(row)  # zeros (padding) first, then the prompt


def test_configure_processor_budget_used_by_processor(tiny_vlm_dir: Path) -> None:
    from mmzero_runtime.models.processor import load_processor

    processor = load_processor(tiny_vlm_dir, TINY_IMAGE)
    configure_processor(processor, ImageSpec(min_pixels=3136, max_pixels=12544))
    out = processor.image_processor(images=[_chart()], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 6, 8]]
