"""Batch stages in shards: on a cluster, `resources.generation.replicas` pods each do one
contiguous block of a stage's items (the Proposer's topic rows, the Coder's or the Solver's
proposals, the probes), as `mmzero stage KIND --shards N --shard K`.

Every item of these stages is sampled, rendered, voted and filtered on its own, with seeds
derived from the item, so a block's rows are the rows the whole stage would write for those
items. A shard writes its files and a manifest under `shards/<stage prefix>/<K>`; the shard
that commits last finds every shard's manifest and merges: JSON Lines tables concatenated in
shard order (which is item order), every other file (images) copied, health figures computed
over the whole, the stage's manifest written last, and the shards deleted. A shard that fails
loses only its block: its retry finds the other shards done. Two shards finishing together may
both merge; they write the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.plan import SHARDED_KINDS, Stage
from mmzero_runtime.storage.manifest import StageOutput, read_manifest, verify
from mmzero_runtime.storage.store import ArtifactStore

T = TypeVar("T")

SHARDS_DIR = "shards"
"""Top-level prefix of unmerged shards; outside every stage's prefix."""
TABLE_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Shard:
    """Block `index` of `count` (0 of 1: the whole stage)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise StageError(f"--shard {self.index} must lie in [0, --shards {self.count})")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def items(self, items: Sequence[T]) -> list[T]:
        """This shard's contiguous block of `items`; the blocks of shards 0..count-1, in order,
        are `items`.

        >>> [Shard(k, 3).items("abcdefg") for k in range(3)]
        [['a', 'b'], ['c', 'd'], ['e', 'f', 'g']]
        """
        n = len(items)
        return list(items[n * self.index // self.count : n * (self.index + 1) // self.count])


def check_shardable(stage: Stage, shard: Shard) -> None:
    """Only batch stages of independent items run in shards."""
    if not shard.whole and stage.kind not in SHARDED_KINDS:
        raise StageError(
            f"stage {stage.name}: --shards {shard.count}, but only "
            f"{', '.join(SHARDED_KINDS)} run in shards; run it without --shards"
        )


def shards_root(stage: Stage) -> str:
    return f"{SHARDS_DIR}/{stage.output}"


def shard_prefix(stage: Stage, shard: Shard) -> str:
    """Where shard `shard` of `stage` writes: `shards/i<N>/<kind>/<K>`."""
    return f"{shards_root(stage)}/{shard.index:03d}"


def pending(store: ArtifactStore, stage: Stage, count: int) -> list[int]:
    """Shards of `stage` without a manifest yet."""
    prefixes = [shard_prefix(stage, Shard(k, count)) for k in range(count)]
    return [k for k, prefix in enumerate(prefixes) if read_manifest(store, prefix) is None]


def merge(store: ArtifactStore, stage: Stage, count: int) -> tuple[StageOutput, dict[str, int]]:
    """The stage's output gathered from its `count` finished shards (each checked against its
    manifest first), and their failure counts summed; see the module docstring."""
    output = StageOutput(store, stage.output, stage.name)
    tables: dict[str, list[bytes]] = {}
    owner: dict[str, int] = {}
    failures: Counter[str] = Counter()
    for k in range(count):
        prefix = shard_prefix(stage, Shard(k, count))
        manifest = verify(store, prefix)
        failures.update(manifest.meta.get("failures", {}))
        for name in sorted(manifest.files):
            key = f"{prefix}/{name}"
            if name.endswith(TABLE_SUFFIX):
                tables.setdefault(name, []).append(store.read_bytes(key))
            elif name in owner:
                raise StageError(
                    f"stage {stage.name}: shards {owner[name]} and {k} both wrote {name}; a "
                    "sharded stage's files other than tables must be per item"
                )
            else:
                owner[name] = k
                output.put_file(name, store.path(key))
    for name, parts in sorted(tables.items()):
        output.put_bytes(name, b"".join(parts))
    return output, dict(sorted(failures.items()))
