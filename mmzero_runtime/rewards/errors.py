"""Errors of the rewards layer: each message names the item or batch, the fault and the remedy."""

from __future__ import annotations


class RewardError(RuntimeError):
    """A reward or filter cannot be computed honestly: bad inputs, or too many failed outcomes."""
