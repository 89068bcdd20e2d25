"""Errors of the training package: each message names the step or item, the fault and the remedy."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A GRPO step that cannot run honestly on the rollouts it was given."""


class CheckpointError(RuntimeError):
    """A checkpoint directory that is missing, incomplete or does not match the trainer."""
