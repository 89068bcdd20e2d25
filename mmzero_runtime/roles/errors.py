"""Errors of the roles package: only prompt rendering raises; parsers return failures as values."""

from __future__ import annotations


class ChatTemplateError(ValueError):
    """A tokenizer or processor that cannot turn chat messages into a prompt string."""
