"""Errors of stages and the executors."""


class StageError(RuntimeError):
    """A stage cannot run or cannot finish; the message names the stage, the cause and the fix."""


class ProvenanceError(StageError):
    """An input was made by another checkpoint than the one the plan names."""
