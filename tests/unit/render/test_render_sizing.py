"""The output-size policy: fit into the pixel budget, scale small drawings up, refuse slivers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.render.errors import SvgParseError, TooLargeError
from mmzero_runtime.render.sizing import MAX_SIDE, plan_size


def plan(width: float, height: float) -> tuple[int, int]:
    """plan_size with the default budget: 512^2 .. 2048^2 pixels, aspect up to 100:1."""
    return plan_size(
        width, height, min_pixels=262_144, max_pixels=4_194_304, max_aspect_ratio=100.0
    )


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        pytest.param(800, 600, (800, 600), id="within-budget-native"),  # 480k px: untouched
        pytest.param(800.4, 600.6, (800, 601), id="fraction-rounded"),  # as cairosvg rounds
        pytest.param(1e5, 1e5, (2048, 2048), id="huge-square-to-max"),  # 1e10 px -> 2048^2
        pytest.param(4096, 2048, (2896, 1448), id="oversize-keeps-aspect"),  # sqrt(4Mi*2)=2896.3
        # sqrt(256Ki*2)=724.1, rounded up to 725 x 363: 724 x 362 = 262,088 is under the floor
        pytest.param(64, 32, (725, 363), id="tiny-scaled-to-min"),
        pytest.param(1e200, 1e200, (2048, 2048), id="area-overflows-float"),  # w*h is inf
        pytest.param(10_000, 100, (10_000, 100), id="aspect-exactly-limit"),  # 100:1 allowed
    ],
)
def test_plan_size_drawing_size_gives_output_size(
    width: float, height: float, expected: tuple[int, int]
) -> None:
    assert plan(width, height) == expected


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(10_100, 100, id="wide-101-to-1"),  # just past the 100:1 limit
        pytest.param(1, 101, id="tall-1-to-101"),  # the limit applies either way round
        pytest.param(1e308, 1e-308, id="ratio-overflows"),  # width/height is inf
    ],
)
def test_plan_size_aspect_past_limit_raises_too_large(width: float, height: float) -> None:
    with pytest.raises(TooLargeError, match="aspect ratio"):
        plan(width, height)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(0, 0, id="no-size"),  # no width, height or viewBox
        pytest.param(100, 0, id="zero-height"),
        pytest.param(-100, 50, id="negative-width"),
        pytest.param(math.nan, 50, id="nan-width"),  # width="nan" parses as a float
        pytest.param(math.inf, 50, id="inf-width"),  # so does width="inf"
    ],
)
def test_plan_size_undefined_size_raises_parse_error(width: float, height: float) -> None:
    with pytest.raises(SvgParseError, match="size is undefined or invalid"):
        plan(width, height)


def test_plan_size_side_past_cairo_limit_raises_too_large() -> None:
    with pytest.raises(TooLargeError, match=f"{MAX_SIDE} px"):
        plan_size(100_000, 1_000, min_pixels=784, max_pixels=10**9, max_aspect_ratio=100)


@given(
    width=st.floats(min_value=0.01, max_value=1e9),
    aspect=st.floats(min_value=1 / 100, max_value=100),
    min_pixels=st.integers(min_value=784, max_value=1 << 20),
    extra=st.integers(min_value=0, max_value=1 << 22),
)
def test_plan_size_any_drawing_lands_inside_budget(
    width: float, aspect: float, min_pixels: int, extra: int
) -> None:
    max_pixels = min_pixels + extra
    out_w, out_h = plan_size(
        width, width / aspect, min_pixels=min_pixels, max_pixels=max_pixels, max_aspect_ratio=100.5
    )
    assert out_w * out_h <= max_pixels
    # rounding each side to a whole pixel may lose up to one row or column below the minimum
    assert out_w * out_h >= min_pixels - (out_w + out_h)
