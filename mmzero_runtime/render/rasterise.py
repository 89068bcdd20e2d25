"""The task a sandbox worker runs: SVG bytes in, an RGB PNG on white (or a reason) out.

Parses with cairosvg's own defusedxml-based tree (entities and external DTDs refused), decides
the output size from the intrinsic size before any pixel is allocated (sizing.py), draws with
a url_fetcher that refuses every external resource, composites onto white (§13.14: the
reference's transparent PNGs turned black under `.convert("RGB")`) and encodes the PNG once.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import cairocffi
import cairosvg.helpers
import cairosvg.parser
import cairosvg.surface
import numpy as np
from defusedxml import DefusedXmlException
from PIL import Image

from mmzero_runtime.render.errors import (
    BlockedResourceError,
    EmptyImageError,
    Reason,
    RenderError,
    SvgParseError,
)
from mmzero_runtime.render.sizing import plan_size
from mmzero_runtime.render.structure import expanded_size

log = logging.getLogger(__name__)

# Pillow's name for the byte layout of one native-endian cairo ARGB32 pixel, alpha ignored.
_RAW_MODE = "BGRX" if sys.byteorder == "little" else "XRGB"

PNG_COMPRESS_LEVEL = 6
"""zlib level of the output PNG (Pillow's default); see benchmarks/RESULTS.md."""

_KEPT_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TMPDIR",
        "FONTCONFIG_FILE",
        "FONTCONFIG_PATH",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_DIRS",
    }
)
"""Environment variables a worker keeps: locale and font lookup, nothing that grants access."""

_WARM_UP_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
    b'<text x="2" y="15" font-family="sans-serif" font-size="12">Aa 1</text></svg>'
)


@dataclass(frozen=True)
class RasterJob:
    """One SVG to render, with the limits that apply to it."""

    id: str
    svg: bytes
    min_pixels: int
    max_pixels: int
    max_aspect_ratio: float


@dataclass(frozen=True)
class RasterOutcome:
    """What the worker sends back: PNG bytes, or no bytes and a reason."""

    id: str
    reason: Reason
    png: bytes | None = None
    width: int = 0
    height: int = 0
    detail: str = ""


def refuse_fetch(url: str, resource_type: str) -> bytes:
    """cairosvg url_fetcher that fetches nothing: file, http and data URIs alike.

    Data URIs are refused too: a nested SVG in one is a second document with its own `<use>`
    and `<image>` graph, and a model writing a chart has no need for embedded rasters.
    """
    scheme = url.split(":", 1)[0] if ":" in url else "file"
    raise BlockedResourceError(
        f"external {resource_type} resource refused ({scheme}: {url[:80]!r}); "
        "draw everything inline, the sandbox fetches no files, URLs or data URIs"
    )


class _Viewport:
    """The few surface attributes cairosvg's size() reads, for sizing before any surface exists."""

    dpi = 96.0
    font_size = 16.0  # 12pt at 96 dpi, cairosvg's initial font size
    context_width: float | None = None
    context_height: float | None = None


def parse(svg: bytes) -> cairosvg.parser.Tree:
    """Parse with entities and external references refused (cairosvg `unsafe=False`)."""
    if not svg.strip():
        raise SvgParseError("input is empty; send an SVG document")
    return cairosvg.parser.Tree(bytestring=svg, url_fetcher=refuse_fetch, unsafe=False)


def intrinsic_size(tree: cairosvg.parser.Tree) -> tuple[float, float]:
    """The SVG's own width and height in px (width/height attributes, else the viewBox)."""
    if tree.tag != "svg":
        raise SvgParseError(f"root element is <{tree.tag}>, not <svg>; send an SVG document")
    width, height, _ = cairosvg.helpers.node_format(_Viewport(), tree)
    return float(width), float(height)


def draw(tree: cairosvg.parser.Tree, width: int, height: int) -> cairocffi.ImageSurface:
    """Rasterise onto a transparent ARGB32 surface of exactly width x height."""
    surface = cairosvg.surface.PNGSurface(tree, None, 96, output_width=width, output_height=height)
    surface.cairo.flush()
    image: cairocffi.ImageSurface = surface.cairo
    return image


def png_on_white(image: cairocffi.ImageSurface) -> bytes:
    """RGB PNG of the premultiplied ARGB surface composited over opaque white (in place).

    Premultiplied colour c <= alpha a, so white-over is c + (255 - a) per channel without carry:
    one add of (255 - a) * 0x010101 on each native-endian 32-bit pixel.

    A drawing is empty only when the page stays all white: nothing painted, or only white. Partly
    covered white pixels composite to white too, so the rule does not depend on the output scale;
    a canvas filled with one other colour renders, as in the reference.
    """
    width, height, stride = image.get_width(), image.get_height(), image.get_stride()
    rows = np.frombuffer(image.get_data(), dtype=np.uint32).reshape(height, stride // 4)
    pixels = rows[:, :width]
    spare = pixels >> 24
    np.subtract(np.uint32(255), spare, out=spare)
    np.multiply(spare, np.uint32(0x010101), out=spare)
    pixels += spare
    pixels |= np.uint32(0xFF000000)
    if (pixels == np.uint32(0xFFFFFFFF)).all():
        raise EmptyImageError(
            "every pixel is white after compositing on white: the drawing shows nothing; "
            "draw visible content"
        )
    return encode_png(image.get_data(), width, height, stride)


def encode_png(data: Any, width: int, height: int, stride: int) -> bytes:
    """PNG bytes (RGB, no alpha) of an opaque cairo ARGB32 buffer."""
    image = Image.frombuffer("RGB", (width, height), data, "raw", _RAW_MODE, stride, 1)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def classify(error: Exception) -> tuple[Reason, str]:
    """Reason code and detail for an exception raised while parsing or drawing one SVG."""
    match error:
        case RenderError():
            return error.reason, str(error)
        case ElementTree.ParseError():
            return "parse_error", f"not well-formed XML ({error}); fix the markup"
        case DefusedXmlException():
            return "parse_error", f"XML entities are refused ({type(error).__name__}); inline text"
        case RecursionError():
            return "too_large", "nesting or <use> references too deep; flatten the document"
        case cairocffi.CairoError():
            return "parse_error", f"cairo refused the drawing: {error}"[:300]
        case _:
            message = f"{type(error).__name__}: {error}"[:300]
            return "parse_error", f"could not interpret the SVG ({message}); fix the markup"


def rasterise(job: RasterJob) -> RasterOutcome:
    """Render one job; a bad SVG becomes a reason, never an exception (MemoryError excepted)."""
    try:
        tree = parse(job.svg)
        expanded_size(tree.xml_tree)
        width, height = plan_size(
            *intrinsic_size(tree),
            min_pixels=job.min_pixels,
            max_pixels=job.max_pixels,
            max_aspect_ratio=job.max_aspect_ratio,
        )
        png = png_on_white(draw(tree, width, height))
    except MemoryError:
        raise  # the pool replaces a worker that ran out of memory
    except cairocffi.CairoError as error:
        if error.status == cairocffi.STATUS_NO_MEMORY:
            raise MemoryError(f"cairo ran out of memory: {error}") from error
        return _failed(job, error)
    except Exception as error:  # one bad SVG loses only itself
        return _failed(job, error)
    return RasterOutcome(job.id, "ok", png, width, height)


def _failed(job: RasterJob, error: Exception) -> RasterOutcome:
    reason, detail = classify(error)
    return RasterOutcome(job.id, reason, detail=detail)


def init_worker() -> None:
    """Drop inherited secrets, load fonts and warm caches once per worker, before its limits."""
    for name in list(os.environ):
        if name not in _KEPT_ENV:
            del os.environ[name]  # credentials of the parent (S3 keys, tokens) stay there
    sys.dont_write_bytecode = True  # nothing on the render path writes, .pyc files included
    Image.init()
    outcome = rasterise(RasterJob("warm-up", _WARM_UP_SVG, 784, 1 << 20, 100.0))
    if outcome.reason != "ok":
        log.warning("render worker warm-up failed pid=%d detail=%s", os.getpid(), outcome.detail)
