"""Errors of the models package: each names the model path or item, the fault and the remedy."""

from __future__ import annotations


class ModelError(Exception):
    """A model reference that cannot be loaded or built (missing, not a VLM, corrupt, offline)."""


class InputError(ValueError):
    """Chat messages and images that cannot become model input (placeholder/image mismatch)."""
