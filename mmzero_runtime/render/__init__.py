"""SVG render sandbox: model-written SVG to an RGB PNG on white, in limited worker processes.

`Renderer.render_many` renders a batch through a persistent pool; `render_file` renders one
file for `mmzero render in.svg out.png`. Reference §4, defects §13.14 and §13.17 fixed.
"""

from mmzero_runtime.render.errors import (
    BlockedResourceError,
    DuplicateIdError,
    EmptyImageError,
    Reason,
    RenderError,
    SvgParseError,
    TooLargeError,
)
from mmzero_runtime.render.sandbox import Renderer, RenderResult, render_file

__all__ = [
    "BlockedResourceError",
    "DuplicateIdError",
    "EmptyImageError",
    "Reason",
    "RenderError",
    "RenderResult",
    "Renderer",
    "SvgParseError",
    "TooLargeError",
    "render_file",
]
