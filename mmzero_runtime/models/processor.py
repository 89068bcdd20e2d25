"""The Qwen-VL processor every role uses: tokenizer + PIL image processor, no video processor.

transformers' `Qwen2VLProcessor` insists on a video processor, and that needs a torchvision
wheel built for the exact torch in use (a CPU torch beside a CUDA torchvision fails at import,
tiny-model-notes). MM-Zero feeds one still image per Solver prompt, so this subclass drops the
video processor and keeps the PIL image backend everywhere: rollout, training, serving and
evaluation then produce the same pixels on any machine, with or without torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

from mmzero_runtime.models.inputs import IMAGE_TOKEN, configure_processor
from mmzero_runtime.spec import ImageSpec


class ImageOnlyQwenVLProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` without the video processor (images only, PIL backend).

    The image path (expanding each `<|image_pad|>` to grid_t*grid_h*grid_w / merge^2 copies and
    returning `mm_token_type_ids`) is Qwen2VLProcessor's own; Qwen2.5-VL and Qwen3-VL images
    follow the same rule with their own image processor (patch 14 or 16).
    """

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None
    ) -> None:
        self.image_token = IMAGE_TOKEN
        self.video_token = "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(  # type: ignore[no-untyped-call]
            self, image_processor, tokenizer, chat_template=chat_template
        )


def _chat_template(path: str | Path, tokenizer: Any) -> str | None:
    """The tokenizer's chat template, else the processor-level `chat_template.json` (Qwen2-VL
    checkpoints on the hub keep the multimodal template there)."""
    template = tokenizer.chat_template
    processor_file = Path(path) / "chat_template.json"
    if template is None and processor_file.is_file():
        template = json.loads(processor_file.read_text())["chat_template"]
    return template if isinstance(template, str) else None


def load_processor(path: str | Path, image_spec: ImageSpec) -> ImageOnlyQwenVLProcessor:
    """The processor of a local model directory, with the PIL image backend and the budget."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call]
        path, backend="pil"
    )
    processor = ImageOnlyQwenVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=_chat_template(path, tokenizer),
    )
    configure_processor(processor, image_spec)
    return processor
