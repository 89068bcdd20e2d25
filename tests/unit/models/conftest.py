"""Fixtures for the models tests: the session's untrained tiny model, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzero_runtime.models.loading import LoadedVLM, load_vlm
from mmzero_runtime.models.tiny import TINY_IMAGE


@pytest.fixture(scope="session")
def tiny_vlm(tiny_vlm_dir: Path) -> LoadedVLM:
    """The untrained tiny model and its processor, with the tiny profile's pixel budget."""
    return load_vlm(tiny_vlm_dir, image_spec=TINY_IMAGE)
