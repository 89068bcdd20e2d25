"""Which checkpoint made each record, and the check that a stage's inputs came from the plan.

Every generated record names the content digest of the checkpoint that produced it. A stage
refuses records whose producer is not the checkpoint the plan chains in (reference §2.1), so a
stale or swapped artifact fails loudly instead of training the wrong thing (user-asks §6.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mmzero_runtime.stages.errors import ProvenanceError
from mmzero_runtime.stages.process.context import StageContext


def check_producer(
    ctx: StageContext, rows: Iterable[dict[str, Any]], field: str, key: str, source: str
) -> None:
    """Raise unless every row's `field` is the digest of the checkpoint at `key`."""
    expected = ctx.digest_of(key)
    for row in rows:
        if row.get(field) != expected:
            raise ProvenanceError(
                f"stage {ctx.name}: {source} item {row.get('id')!r} was made by checkpoint "
                f"{row.get(field)!r}, but the plan names {key} ({expected}); the input is stale "
                "or was replaced: delete the stages after the changed checkpoint and rerun"
            )
