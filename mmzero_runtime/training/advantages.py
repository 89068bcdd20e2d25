"""Group-normalised GRPO advantages: (r - mean) / (unbiased std + eps) within each prompt's group.

Reference §7.1 (EasyR1 `compute_grpo_outcome_advantage`). Groups whose rewards are all equal carry
no policy signal: they are counted, and either kept with advantage 0 (the reference) or dropped
from the loss, per `GRPOSpec.zero_variance_groups` (rl-anchors §2.6 pitfall 1).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from mmzero_runtime.training.errors import TrainingError


@dataclass(frozen=True)
class Advantages:
    """One advantage per sequence, which sequences enter the loss, and the group counts."""

    values: torch.Tensor
    """(N,) float32 advantage of each sequence; 0 for zero-variance groups."""
    included: torch.Tensor
    """(N,) bool: False for sequences of dropped zero-variance groups."""
    groups: int
    zero_variance_groups: int


def group_advantages(
    rewards: Sequence[float],
    group_ids: Sequence[Hashable],
    *,
    eps: float,
    zero_variance: Literal["keep", "drop"],
) -> Advantages:
    """GRPO advantages of `rewards`, normalised within the groups named by `group_ids`.

    >>> a = group_advantages([1.0, 0.0, 2.0, 2.0], ["a", "a", "b", "b"], eps=1e-6,
    ...                      zero_variance="drop")
    >>> [round(v, 4) for v in a.values.tolist()], a.included.tolist(), a.zero_variance_groups
    ([0.7071, -0.7071, 0.0, 0.0], [True, True, False, False], 1)
    """
    if len(rewards) != len(group_ids):
        raise TrainingError(
            f"{len(rewards)} rewards but {len(group_ids)} group ids; pass one group id per reward"
        )
    if zero_variance not in ("keep", "drop"):
        raise ValueError(f"zero_variance: got {zero_variance!r}, expected 'keep' or 'drop'")
    members: dict[Hashable, list[int]] = {}
    for index, (group, reward) in enumerate(zip(group_ids, rewards, strict=True)):
        if not math.isfinite(reward):
            raise TrainingError(f"group {group!r}: reward {reward!r} is not finite; fix the reward")
        members.setdefault(group, []).append(index)
    scores = torch.tensor(list(rewards), dtype=torch.float64)  # (N,)
    values = torch.zeros_like(scores)  # (N,)
    included = torch.ones(len(scores), dtype=torch.bool)  # (N,)
    zero_variance_groups = 0
    for group, indices in members.items():
        if len(indices) < 2:
            raise TrainingError(
                f"group {group!r} has 1 response; GRPO normalises rewards within a group and needs "
                "at least 2 responses per prompt (drop whole groups, never single responses)"
            )
        group_scores = scores[indices]
        if bool((group_scores == group_scores[0]).all()):
            # std is exactly 0: the reference's (r - mean) / eps is 0 up to rounding; use exact 0.
            zero_variance_groups += 1
            if zero_variance == "drop":
                included[indices] = False
            continue
        values[indices] = (group_scores - group_scores.mean()) / (group_scores.std() + eps)
    return Advantages(values.float(), included, len(members), zero_variance_groups)
