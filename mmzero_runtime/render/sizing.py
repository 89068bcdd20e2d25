"""Pure size policy: the output raster size of an SVG from its intrinsic size and the budget.

The reference rendered at whatever size the model wrote and rejected > 16,384 px afterwards
(§4, §13.14). Here the size is decided before rasterising: drawings larger than
`ImageSpec.max_pixels` are scaled down into it, smaller than `min_pixels` scaled up, and only an
aspect ratio past `RenderSpec.max_aspect_ratio` is refused.
"""

from __future__ import annotations

import math

from mmzero_runtime.render.errors import SvgParseError, TooLargeError

MAX_SIDE = 32_767
"""Cairo's largest image-surface side in pixels."""


def plan_size(
    width: float,
    height: float,
    *,
    min_pixels: int,
    max_pixels: int,
    max_aspect_ratio: float,
) -> tuple[int, int]:
    """Output (width, height) in whole pixels for an SVG whose own size is width x height px.

    >>> plan_size(800, 600, min_pixels=784, max_pixels=4_194_304, max_aspect_ratio=100)
    (800, 600)
    >>> plan_size(1e5, 1e5, min_pixels=784, max_pixels=4_194_304, max_aspect_ratio=100)
    (2048, 2048)
    >>> plan_size(400, 300, min_pixels=262_144, max_pixels=4_194_304, max_aspect_ratio=100)
    (592, 444)
    """
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        raise SvgParseError(
            f"SVG size is undefined or invalid (width={width!r}, height={height!r}); "
            "give the root <svg> positive width and height or a viewBox"
        )
    ratio = width / height
    aspect = max(ratio, 1 / ratio)
    if not math.isfinite(aspect) or aspect > max_aspect_ratio:
        raise TooLargeError(
            f"aspect ratio {aspect:.4g}:1 exceeds the limit {max_aspect_ratio:g}:1; "
            "draw on a less elongated canvas"
        )
    area = width * height  # may be inf for absurd sizes; the clamp below handles it
    if min_pixels <= area <= max_pixels:
        out_w, out_h = round(width), round(height)
    elif area < min_pixels:  # round up so the result is never below the budget's floor
        out_w, out_h = (
            math.ceil(math.sqrt(min_pixels * ratio)),
            math.ceil(math.sqrt(min_pixels / ratio)),
        )
    else:
        target = min(area, max_pixels)
        out_w, out_h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
    return _fit(max(out_w, 1), max(out_h, 1), max_pixels)


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Trim the longer side a pixel at a time until rounding no longer overshoots the budget."""
    while width * height > max_pixels and max(width, height) > 1:
        if width >= height:
            width -= 1
        else:
            height -= 1
    if max(width, height) > MAX_SIDE:
        raise TooLargeError(
            f"output side {max(width, height)} px exceeds the {MAX_SIDE} px raster limit; "
            "lower ImageSpec.max_pixels or RenderSpec.max_aspect_ratio"
        )
    return width, height
