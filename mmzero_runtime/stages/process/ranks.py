"""The processes of one trainer that spans GPUs or nodes (torchrun sets RANK and WORLD_SIZE).

Rank 0 leads: it runs the role's rollout function (frozen roles, renders, rewards), writes the
step records and publishes the stage. Each policy `generate` call it makes is shared out: it
broadcasts the requests, with the bytes of their images (another node has no copy of a file
this one rendered), every rank samples its slice of them with the policy's full weights, and
the results come back in request order. The other ranks follow: they answer those calls until
the leader broadcasts the step's rollouts (again with their images), and then every rank trains
on the same rollouts, each on its share (the trainer shards them). One process (no launcher)
is a world of one, and none of this runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmzero_runtime.generation.base import (
    GenerationRequest,
    GenerationResult,
    Generator,
    ProgressCallback,
)
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.training.batch import Rollout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the trainer's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        """Rank 0: the one process that writes records and publishes."""
        return self.rank == 0

    @property
    def node_leader(self) -> bool:
        """The first process on its node (the one that downloads and checks inputs there)."""
        return self.local_rank == 0


def from_environment() -> Ranks:
    """The ranks a distributed launcher set (torchrun: RANK, WORLD_SIZE, LOCAL_RANK)."""
    env = os.environ
    return Ranks(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")),
                 int(env.get("LOCAL_RANK", "0")))  # fmt: skip


def join(ranks: Ranks) -> None:
    """Join the launcher's process group (NCCL on GPUs, gloo on CPUs) and take this
    process's GPU; DeepSpeed later finds the group made."""
    import torch
    import torch.distributed as dist

    if ranks.world == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (a world of one waits for nobody)."""
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _broadcast(message: Any) -> Any:
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _image_bytes(paths: Sequence[Path]) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in paths if path.is_file()}


class _Localiser:
    """Writes images sent by the leader into this rank's scratch, once per content."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    def __call__(self, path: Path, images: dict[str, bytes]) -> Path:
        data = images.get(str(path))
        if data is None:  # the leader could not read it either: the backend reports it
            return path
        local = self.scratch / f"{hashlib.sha256(data).hexdigest()[:32]}{path.suffix}"
        if not local.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(local)
        return local


class SharedPolicy:
    """The policy generator of a trainer with several ranks; see the module docstring.

    `weights` is the engine's context that gathers the full (ZeRO-3-sharded) weights on every
    rank, so that each rank samples alone. On the leader, `generate` is the Generator call the
    rollout function makes; on the others, `follow` answers those calls.
    """

    def __init__(
        self,
        ranks: Ranks,
        policy: Generator,
        weights: Callable[[], contextlib.AbstractContextManager[Any]],
        scratch: Path,
    ) -> None:
        self.ranks, self.policy, self.weights = ranks, policy, weights
        self.localise = _Localiser(scratch)

    @property
    def model_digest(self) -> str:
        return self.policy.model_digest

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[GenerationResult]:
        """Leader: every rank samples its slice of `requests`; results in request order."""
        images = _image_bytes([path for request in requests for path in request.images])
        _broadcast(("generate", list(requests), images))
        return self._sample(list(requests))

    def _sample(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch.distributed as dist

        rank, world = self.ranks.rank, self.ranks.world
        with self.weights():
            mine = self.policy.generate(requests[rank::world])
        log.info("rank=%d sampled %d of %d requests", rank, len(mine), len(requests))
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, mine)
        results: list[GenerationResult | None] = [None] * len(requests)
        for owner, theirs in enumerate(gathered):
            for k, result in enumerate(theirs):
                results[owner + k * world] = result
        return [r for r in results if r is not None]

    def share_rollouts(self, rollouts: list[Rollout]) -> None:
        """Leader: the step's rollouts go to every rank."""
        images = _image_bytes([r.image for r in rollouts if r.image is not None])
        _broadcast(("rollouts", rollouts, images))

    def abort(self, why: str) -> None:
        """Leader: the step failed; the followers stop with the same message."""
        _broadcast(("abort", why, {}))

    def follow(self) -> list[Rollout]:
        """Follower: answer the leader's generate calls until it sends the step's rollouts."""
        while True:
            kind, payload, images = _broadcast(None)
            if kind == "generate":
                requests = [
                    replace(r, images=tuple(self.localise(p, images) for p in r.images))
                    for r in payload
                ]
                self._sample(requests)
            elif kind == "rollouts":
                return [
                    r if r.image is None else replace(r, image=self.localise(r.image, images))
                    for r in payload
                ]
            else:
                raise StageError(f"rank {self.ranks.rank}: the leader stopped: {payload}")


@contextlib.contextmanager
def leading(shared: SharedPolicy | None) -> Iterator[None]:
    """Around the leader's rollout: a failure is told to the followers before it is raised."""
    try:
        yield
    except BaseException as error:
        if shared is not None:
            shared.abort(f"{type(error).__name__}: {error}")
        raise
