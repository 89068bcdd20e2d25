"""Shared test configuration: tier markers are registered in pyproject.toml (--strict-markers)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Qwen2-VL (tokenizer, processor files, weights), built once per session.

    Real architecture, a few million parameters, ~5 s to build; see mmzero_runtime/models/tiny.py.
    """
    from mmzero_runtime.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-vlm"), seed=0)
