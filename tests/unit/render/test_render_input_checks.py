"""Checks the renderer makes before any worker starts: ids, encoding, input size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mmzero_runtime.render import DuplicateIdError, Renderer
from mmzero_runtime.spec import ImageSpec, RenderSpec


@pytest.fixture
def renderer() -> Iterator[Renderer]:
    # no item below reaches the pool, so no worker process is started
    with Renderer(RenderSpec(max_svg_bytes=1024, workers=1), ImageSpec()) as renderer:
        yield renderer


def test_render_many_duplicate_ids_raises(renderer: Renderer) -> None:
    with pytest.raises(DuplicateIdError, match=r"repeated: \['a'\]"):
        renderer.render_many([("a", "<svg/>"), ("b", "<svg/>"), ("a", "<svg/>")])


@pytest.mark.parametrize(
    ("svg", "reason", "detail"),
    [
        pytest.param(f"<svg>{' ' * 1100}</svg>", "too_large", "1,024-byte", id="text-over-limit"),
        pytest.param(b"x" * 1025, "too_large", "1,025 bytes", id="bytes-over-limit"),
        # a str that has no UTF-8 form
        pytest.param("<svg>\udcff</svg>", "parse_error", "not valid Unicode", id="surrogate"),
    ],
)
def test_render_many_bad_input_fails_before_pool(
    renderer: Renderer, svg: str | bytes, reason: str, detail: str
) -> None:
    (result,) = renderer.render_many([("item-7", svg)])
    assert (result.id, result.reason, result.png) == ("item-7", reason, None)
    assert result.detail.startswith("item item-7: ")
    assert detail in result.detail


def test_render_many_empty_batch_returns_nothing(renderer: Renderer) -> None:
    assert renderer.render_many([]) == []
