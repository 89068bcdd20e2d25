"""What a running stage knows: the run, its store, its plan entry, its scratch space and seeds.

A stage reads inputs only through the store (by the keys its plan entry names) and writes only
through `StageOutput`; its scratch directory (`<run>/.work/<stage>`) survives a kill, so a
rerun resumes from the last checkpoint there, and is deleted once the manifest is written.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mmzero_runtime.render import BatchRenderer, open_renderer
from mmzero_runtime.rewards.outcomes import FailureLedger
from mmzero_runtime.seeds import derive_seed
from mmzero_runtime.spec import MMZeroRun, RunSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.keys import producer_prefix
from mmzero_runtime.stages.graph.launch import render_service
from mmzero_runtime.stages.graph.plan import Stage
from mmzero_runtime.stages.process.ranks import Ranks, from_environment
from mmzero_runtime.stages.process.shards import Shard, shard_prefix
from mmzero_runtime.storage.manifest import Manifest, StageOutput, read_manifest
from mmzero_runtime.storage.store import ArtifactStore

log = logging.getLogger(__name__)

WORK_DIR = ".work"
"""Scratch space of unfinished stages, under the run directory; never part of an artifact."""


@dataclass
class StageContext:
    """Everything one stage run needs; built by the runner, passed to the stage's `run`."""

    run: MMZeroRun
    store: ArtifactStore
    stage: Stage
    device: str = "cpu"
    ledger: FailureLedger = field(default_factory=FailureLedger)
    ranks: Ranks = field(default_factory=from_environment)
    """This process's place among a multi-GPU trainer's processes (one process: rank 0 of 1)."""
    shard: Shard = field(default_factory=Shard)
    """The block of a batch stage's items this process does (`stages/process/shards.py`)."""

    @property
    def spec(self) -> RunSpec:
        return self.run.spec

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def workdir(self) -> Path:
        """Scratch directory kept across a kill of this stage (resume state, renders)."""
        path = self.store.root / WORK_DIR / self._scratch_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def renderer(self) -> BatchRenderer:
        """The render service the executor named (`launch.RENDER_URL_ENV`), else a sandbox
        pool working in the scratch directory."""
        workdir = str(self.workdir / "render")
        return open_renderer(self.spec.render, self.spec.image, workdir, render_service())

    def seed(self, *parts: object) -> int:
        """Seed of one random choice of this stage: (run seed, iteration, stage, *parts)."""
        return derive_seed(self.spec.seed, self.stage.iteration, self.stage.kind, *parts)

    def input_key(self, purpose: str) -> str:
        """The artifact key the plan gives this stage for `purpose`."""
        keys = dict(self.stage.inputs)
        if purpose not in keys:
            raise StageError(
                f"stage {self.name}: no input {purpose!r} in its plan ({sorted(keys)})"
            )
        return keys[purpose]

    def producer(self, key: str) -> Manifest:
        """The manifest of the finished stage that wrote `key` (base model included)."""
        prefix = producer_prefix(key)
        manifest = read_manifest(self.store, prefix)
        if manifest is None:
            raise StageError(
                f"stage {self.name}: input {key} is not available: the stage under {prefix} "
                "has not finished; run the stages before it first (mmzero run does this)"
            )
        return manifest

    def model_dir(self, purpose: str) -> Path:
        """Local directory of the checkpoint input `purpose`."""
        return self.store.path(self.input_key(purpose))

    def digest_of(self, key: str) -> str:
        """Content digest of the checkpoint stored under `key`, from its producer's manifest."""
        return self.producer(key).digest(key.removeprefix(producer_prefix(key) + "/"))

    def model_digest(self, purpose: str) -> str:
        """Content digest of the checkpoint input `purpose`."""
        return self.digest_of(self.input_key(purpose))

    def input_path(self, purpose: str, name: str = "") -> Path:
        """Local path of input `purpose` (or of `name` under the input's stage prefix)."""
        key = self.input_key(purpose)
        return self.store.path(f"{producer_prefix(key)}/{name}" if name else key)

    @property
    def _scratch_name(self) -> str:
        """One scratch directory per shard: shards may share a volume."""
        shard = self.shard
        return self.stage.name if shard.whole else f"{self.stage.name}.shard{shard.index:03d}"

    def output(self) -> StageOutput:
        """The stage's (or this shard's) output collector; `commit()` on it marks it done."""
        prefix = self.stage.output if self.shard.whole else shard_prefix(self.stage, self.shard)
        return StageOutput(self.store, prefix, self.stage.name)

    def finish(self) -> None:
        """Remove the scratch directory after the manifest is written."""
        shutil.rmtree(self.store.root / WORK_DIR / self._scratch_name, ignore_errors=True)
