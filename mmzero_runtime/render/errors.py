"""Errors of the SVG render sandbox; each carries the reason code its item fails with.

A `RenderError` raised inside a worker becomes that item's `RenderResult.reason`; nothing else
in the batch is affected (house rule 13: catch at the item boundary).
"""

from __future__ import annotations

from typing import Literal

Reason = Literal[
    "ok",
    "parse_error",
    "timeout",
    "memory",
    "too_large",
    "empty_image",
    "blocked_resource",
    "crash",
]
"""Outcome of one render: `ok`, or why the item has no image."""


class RenderError(Exception):
    """An SVG that cannot be rendered for a reason its author can fix."""

    reason: Reason = "parse_error"


class SvgParseError(RenderError):
    """Not a well-formed SVG document with a defined size (or entities, which are refused)."""

    reason: Reason = "parse_error"


class TooLargeError(RenderError):
    """Input bytes, aspect ratio, nesting depth or reference count past the sandbox limits."""

    reason: Reason = "too_large"


class EmptyImageError(RenderError):
    """The drawing shows nothing: every pixel is white after compositing on white."""

    reason: Reason = "empty_image"


class BlockedResourceError(RenderError):
    """The SVG asked for an external resource (file, http, data URI); the sandbox fetches none."""

    reason: Reason = "blocked_resource"


class DuplicateIdError(ValueError):
    """Two items in one batch share an id, so their results could not be told apart."""
