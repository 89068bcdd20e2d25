"""Fixtures of the trainer tests: a small image and rollouts on the tiny model's prompts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rollouts.py


@pytest.fixture(scope="session")
def chart_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 120x90 two-bar image (48 image tokens at the tiny budget)."""
    path = tmp_path_factory.mktemp("images") / "chart.png"
    image = Image.new("RGB", (120, 90), "white")
    image.paste((200, 30, 30), (10, 30, 50, 90))
    image.paste((30, 30, 200), (60, 50, 100, 90))
    image.save(path)
    return path
