"""Procedural SVGs through the real render sandbox: every one renders, on white, in budget."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mmzero_runtime.models.procedural import HELD_OUT_OFFSET, generate_items
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.render import Renderer
from mmzero_runtime.spec import RenderSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_procedural_svgs_render_in_tiny_budget() -> None:
    items = generate_items(60, seed=0) + generate_items(20, seed=0, offset=HELD_OUT_OFFSET)
    with Renderer(RenderSpec(workers=2, timeout_seconds=20), TINY_IMAGE) as renderer:
        results = renderer.render_many([(item.id, item.svg) for item in items])
    assert [r.reason for r in results] == ["ok"] * len(items)
    for result in results:
        assert result.png is not None
        image = Image.open(io.BytesIO(result.png))
        # the 320 x 240 canvas is drawn at the budget's 224 x 168: 48 image tokens
        assert (image.size, image.mode) == ((224, 168), "RGB")
        assert image.getpixel((1, 1)) == (255, 255, 255)  # the white background rect
