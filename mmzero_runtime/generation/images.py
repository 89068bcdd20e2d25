"""Reading a request's image files: the only place generation touches the filesystem.

Images travel between stages as paths to stored PNGs (user-asks §6.5); a backend decodes them
here, fully, so a truncated or corrupt file becomes `image_unreadable` for its request alone.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mmzero_runtime.generation.errors import ImageReadError


def load_image(path: Path, *, request_id: str) -> Image.Image:
    """The decoded image at `path`; raises `ImageReadError` naming the request and the file."""
    if not path.is_file():
        raise ImageReadError(
            "image_missing",
            f"request {request_id!r}: image file {str(path)!r} does not exist; check that the "
            "render stage stored it before generation",
        )
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(
            "image_unreadable",
            f"request {request_id!r}: image file {str(path)!r} cannot be decoded "
            f"({type(error).__name__}: {error}); re-render it or drop the item",
        ) from error
