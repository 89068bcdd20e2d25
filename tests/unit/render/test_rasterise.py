"""The worker-side steps, run in-process: sizing input, the refusing fetcher, white compositing,
and the mapping from exceptions to reason codes."""

from __future__ import annotations

import io
import signal
from xml.etree.ElementTree import ParseError

import cairocffi
import pytest
from defusedxml import EntitiesForbidden
from PIL import Image

from mmzero_runtime.render.errors import (
    BlockedResourceError,
    EmptyImageError,
    Reason,
    SvgParseError,
    TooLargeError,
)
from mmzero_runtime.render.rasterise import (
    RasterJob,
    classify,
    intrinsic_size,
    parse,
    png_on_white,
    rasterise,
    refuse_fetch,
)
from mmzero_runtime.render.sandbox import pool_failure_reason, worker_limits
from mmzero_runtime.spec import ImageSpec, RenderSpec
from mmzero_runtime.workers import TaskResult

SVG = '<svg xmlns="http://www.w3.org/2000/svg" {}><rect width="1" height="1"/></svg>'


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param('width="400" height="300"', (400, 300), id="width-height"),
        pytest.param('viewBox="0 0 800 600"', (800, 600), id="viewbox-only"),  # §4: 800x600
        pytest.param('width="400" viewBox="0 0 800 600"', (400, 600), id="width-and-viewbox"),
        pytest.param('width="2in" height="1in"', (192, 96), id="inches-at-96-dpi"),
        pytest.param('width="100%" height="100%" viewBox="0 0 50 40"', (50, 40), id="percent"),
        pytest.param("", (0, 0), id="no-size"),  # plan_size then refuses it as parse_error
    ],
)
def test_intrinsic_size_root_attributes_give_pixels(
    attributes: str, expected: tuple[float, float]
) -> None:
    assert intrinsic_size(parse(SVG.format(attributes).encode())) == expected


def test_intrinsic_size_root_not_svg_raises_parse_error() -> None:
    with pytest.raises(SvgParseError, match="root element is <html>"):
        intrinsic_size(parse(b"<html><body/></html>"))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("http://127.0.0.1/x.png", id="http"),
        pytest.param("data:image/png;base64,iVBORw0KGgo=", id="data-raster"),  # refused too
        pytest.param("data:image/svg+xml;base64,PHN2Zy8+", id="data-svg"),  # a nested document
    ],
)
def test_refuse_fetch_any_url_raises_blocked_resource(url: str) -> None:
    with pytest.raises(BlockedResourceError, match="external image/\\* resource refused"):
        refuse_fetch(url, "image/*")


def surface_with(red: float, green: float, blue: float, alpha: float) -> cairocffi.ImageSurface:
    """A 2x1 transparent surface whose left pixel is painted with the given colour."""
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, 2, 1)
    context = cairocffi.Context(surface)
    context.set_source_rgba(red, green, blue, alpha)
    context.rectangle(0, 0, 1, 1)
    context.fill()
    surface.flush()
    return surface


@pytest.mark.parametrize(
    ("rgba", "left"),
    [
        # premultiplied c + (255 - a): black at alpha 128 is 0 + 127
        pytest.param((0, 0, 0, 128 / 255), (127, 127, 127), id="half-black-to-grey"),
        # red at alpha 128 is stored as (128, 0, 0, 128): 128 + 127 = 255, 0 + 127
        pytest.param((1, 0, 0, 128 / 255), (255, 127, 127), id="half-red-to-pink"),
        pytest.param((0, 0, 0, 1), (0, 0, 0), id="opaque-black-stays-black"),
    ],
)
def test_png_on_white_translucent_pixel_composites_over_white(
    rgba: tuple[float, float, float, float], left: tuple[int, int, int]
) -> None:
    image = Image.open(io.BytesIO(png_on_white(surface_with(*rgba))))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == left
    assert image.getpixel((1, 0)) == (255, 255, 255)  # unpainted: white, not black (§13.14)


@pytest.mark.parametrize(
    "rgba",
    [
        pytest.param((0, 0, 0, 0), id="nothing-drawn"),
        # opaque white and transparent differ only before compositing
        pytest.param((1, 1, 1, 1), id="white-on-white"),
        # half-covered white (an anti-aliased edge of a white shape) is still white
        pytest.param((1, 1, 1, 0.5), id="half-white"),
    ],
)
def test_png_on_white_nothing_visible_raises_empty_image(
    rgba: tuple[float, float, float, float],
) -> None:
    with pytest.raises(EmptyImageError, match="every pixel is white"):
        png_on_white(surface_with(*rgba))


@pytest.mark.parametrize(
    "size",
    [
        # up-scaled by a fractional factor: an anti-aliased edge row or column
        pytest.param((300, 200), id="300x200-fractional-upscale"),
        # at native size: every pixel the fill colour
        pytest.param((640, 480), id="640x480-native"),
        # up-scaled by a whole factor
        pytest.param((256, 256), id="256x256-upscale-2x"),
        pytest.param((320, 240), id="320x240"),
        # the widest aspect ratio the sandbox takes
        pytest.param((1000, 10), id="1000x10"),
    ],
)
@pytest.mark.parametrize(
    ("fill", "reason"),
    [
        # one colour fills the canvas: rendered at every scale, as in the reference
        pytest.param("#3366cc", "ok", id="blue"),
        pytest.param("black", "ok", id="black"),
        # white on the white page shows nothing, at every scale
        pytest.param("white", "empty_image", id="white"),
    ],
)
def test_single_colour_drawing_renders_at_every_scale(
    size: tuple[int, int], fill: str, reason: Reason
) -> None:
    width, height = size
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="{width}" height="{height}" fill="{fill}"/></svg>'
    )
    image = ImageSpec()
    job = RasterJob("one", svg.encode(), image.min_pixels, image.max_pixels, 100.0)
    assert rasterise(job).reason == reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(TooLargeError("x"), "too_large", id="render-error-keeps-reason"),
        pytest.param(BlockedResourceError("x"), "blocked_resource", id="blocked"),
        pytest.param(ParseError("not well-formed"), "parse_error", id="xml-syntax"),
        # billion laughs, XXE
        pytest.param(EntitiesForbidden("a", *[None] * 5), "parse_error", id="entities"),
        pytest.param(RecursionError(), "too_large", id="deep-nesting"),
        pytest.param(
            cairocffi.CairoError("bad", cairocffi.STATUS_INVALID_SIZE), "parse_error", id="cairo"
        ),
        pytest.param(IndexError("path data"), "parse_error", id="other-library-error"),
    ],
)
def test_classify_exception_maps_to_reason(error: Exception, reason: Reason) -> None:
    assert classify(error)[0] == reason


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        pytest.param(TaskResult(failure="timeout"), "timeout", id="wall-clock"),
        # RLIMIT_CPU is a time limit too
        pytest.param(TaskResult(failure="crash", exit_code=-signal.SIGXCPU), "timeout", id="cpu"),
        pytest.param(TaskResult(failure="memory"), "memory", id="memory"),
        pytest.param(TaskResult(failure="crash", exit_code=-signal.SIGSEGV), "crash", id="segv"),
        # rasterise catches every exception, so one reaching the pool is a bug: a crash
        pytest.param(TaskResult(failure="error", detail="TypeError"), "crash", id="task-raised"),
    ],
)
def test_pool_failure_reason_task_failure_maps_to_reason(task: TaskResult, reason: Reason) -> None:
    assert pool_failure_reason(task) == reason


def test_worker_limits_spec_gives_rlimits_with_no_file_writes() -> None:
    limits = worker_limits(RenderSpec(memory_bytes=1 << 28, cpu_seconds=7))
    assert (limits.memory_bytes, limits.cpu_seconds_per_task, limits.file_bytes) == (1 << 28, 7, 0)
