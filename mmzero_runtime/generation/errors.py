"""Errors of the generation package.

Only caller bugs raise (a malformed request, two requests with one id, results that do not
match their requests). A bad item (a missing or corrupt image, an overlong prompt) is not an
exception past the item boundary: its `GenerationResult` carries the failure reason instead.
"""

from __future__ import annotations

from typing import Literal

FailureReason = Literal["prompt_too_long", "image_missing", "image_unreadable"]
"""Why a request produced no samples; each is counted by the stage, never retried silently."""


class GenerationRequestError(ValueError):
    """A request that cannot be generated as written: a bug in the stage that built it."""


class DuplicateRequestIdError(GenerationRequestError):
    """Two requests in one call share an id, so their results could not be told apart."""


class ResultMismatchError(RuntimeError):
    """Results that do not answer their requests: an id missing, unknown or repeated, a wrong
    sample count, or another model's digest. Never let such results reach a reward."""


class ImageReadError(Exception):
    """An image file of one request that is missing or cannot be decoded as an image."""

    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: FailureReason = reason
        self.detail = detail
