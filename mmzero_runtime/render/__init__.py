"""SVG render sandbox: model-written SVG to an RGB PNG on white, in limited worker processes.

`Renderer.render_many` renders a batch through a persistent pool; `render_file` renders one
file for `mmzero render in.svg out.png`; `HTTPRenderer` sends batches to the render service
instead (`open_renderer` picks one). Reference §4, defects §13.14 and §13.17 fixed.
"""

import logging

from mmzero_runtime.render.errors import (
    BlockedResourceError,
    DuplicateIdError,
    EmptyImageError,
    Reason,
    RenderError,
    SvgParseError,
    TooLargeError,
)
from mmzero_runtime.render.remote import HTTPRenderer
from mmzero_runtime.render.sandbox import BatchRenderer, Renderer, RenderResult, render_file
from mmzero_runtime.spec import ImageSpec, RenderSpec

log = logging.getLogger(__name__)


def open_renderer(
    render: RenderSpec,
    image: ImageSpec,
    workdir: str,
    service: tuple[str | None, str | None] = (None, None),
) -> BatchRenderer:
    """The render service at `service` (URL, token) when it has a URL, else a local sandbox
    pool."""
    url, token = service
    if url:
        log.info("rendering through the render service url=%s", url)
        return HTTPRenderer(url, token=token)
    return Renderer(render, image, workdir)


__all__ = [
    "BatchRenderer",
    "BlockedResourceError",
    "DuplicateIdError",
    "EmptyImageError",
    "HTTPRenderer",
    "Reason",
    "RenderError",
    "RenderResult",
    "Renderer",
    "SvgParseError",
    "TooLargeError",
    "open_renderer",
    "render_file",
]
