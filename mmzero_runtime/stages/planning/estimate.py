"""Memory of each stage's pod groups, for `mmzero plan` (all roles share the base model's shape).

A trainer group holds the trained role (`models.footprint.trainer_footprint`, sharded with
ZeRO-3 over its GPUs when it has more than one) and generates its own rollouts; a server or
generation group holds each model it loads (one after another: the largest counts) and the KV
cache of one generation batch. Bytes per parameter: 2 on GPUs (bf16), 4 on CPU (fp32).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmzero_runtime.models.footprint import (
    Footprint,
    ModelShape,
    generation_footprint,
    trainer_footprint,
)
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import PodGroup, Stage
from mmzero_runtime.stages.kinds.pipeline import GENERATION_BATCH


@dataclass(frozen=True)
class GroupEstimate:
    """One pod group's memory: per pod, and per GPU when it has GPUs."""

    group: PodGroup
    footprint: Footprint
    """One pod's memory; for a ZeRO-sharded trainer, one GPU's share (states split, own
    activations)."""
    sharded: bool = False

    @property
    def per_gpu(self) -> float | None:
        if not self.group.gpus:
            return None
        return self.footprint.total / (1 if self.sharded else self.group.gpus)


def _tokens(spec: RunSpec, group: PodGroup) -> int:
    """Longest sequence the group generates (prompt + response)."""
    grpo = getattr(spec.roles, group.role)
    return int(grpo.max_prompt_tokens + grpo.max_response_tokens)


def group_estimate(spec: RunSpec, group: PodGroup, shape: ModelShape) -> GroupEstimate:
    """The memory of one pod of `group`."""
    bytes_per = 2 if group.gpus else 4
    kv = generation_footprint(
        shape,
        sequences=GENERATION_BATCH,
        tokens=_tokens(spec, group),
        dtype_bytes=bytes_per,
        name=group.role,
    )
    if group.component == "trainer":
        grpo = getattr(spec.roles, group.role)
        shards = group.gpus * group.replicas
        trained = trainer_footprint(
            shape, grpo, dtype_bytes=bytes_per, shards=max(shards, 1), zero=shards > 1
        )
        rollout_kv = Footprint({"rollout kv": kv.parts[f"{group.role} kv"]})
        return GroupEstimate(group, trained + rollout_kv, sharded=shards > 1)
    return GroupEstimate(group, kv)


def stage_estimates(spec: RunSpec, stage: Stage, shape: ModelShape) -> list[GroupEstimate]:
    """Every pod group of `stage` with its memory."""
    return [group_estimate(spec, group, shape) for group in stage.pods]
