"""Step statistics: sums over micro-batches and ranks, reported as slash-namespaced scalars.

`loss/*` from `grpo_loss` are shares of an update's loss: they are summed within an update and
averaged over updates. Every `*_mean` is weighted by the tokens it was measured on. Values that
every rank computes identically (gradient norm, token totals) are kept apart, never summed over
ranks (STYLE 16).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LOSS_PREFIX = "loss/"


class Tally:
    """Running sums of one step's statistics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        """Per-rank contributions; summed across ranks by `reduced`."""
        self.shared: dict[str, float] = {}
        """Values identical on every rank (summed over updates only)."""
        self.grad_norm_max = 0.0

    def add_sum(self, name: str, value: float) -> None:
        """Add this rank's contribution to a sum."""
        self.sums[name] = self.sums.get(name, 0.0) + value

    def add_shared(self, name: str, value: float) -> None:
        """Add a value every rank computes identically."""
        self.shared[name] = self.shared.get(name, 0.0) + value

    def add_mean(self, name: str, values: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Add the masked values `(B, T)` (all of them if `mask` is None) to a token mean."""
        weights = torch.ones_like(values) if mask is None else mask.to(values.dtype)
        total, count = torch.stack([(values * weights).sum(), weights.sum()]).tolist()
        self.add_sum(f"{name}#sum", total)
        self.add_sum(f"{name}#count", count)

    def add_micro_batch(self, stats: dict[str, float], tokens: float) -> None:
        """Add `grpo_loss` stats of a micro-batch of `tokens` masked tokens."""
        for name, value in stats.items():
            if name.startswith(LOSS_PREFIX):
                self.add_sum(name, value)
            else:
                self.add_sum(f"{name}#sum", value * tokens)
                self.add_sum(f"{name}#count", tokens)

    def add_update(self, grad_norm: float) -> None:
        """Record an optimizer update's gradient norm (non-finite: the update was skipped)."""
        if math.isfinite(grad_norm):
            self.add_shared("grad/norm", grad_norm)
            self.grad_norm_max = max(self.grad_norm_max, grad_norm)
        else:
            self.add_shared("grad/nonfinite_updates", 1.0)

    def reduced(
        self, all_reduce: Callable[[torch.Tensor], torch.Tensor], device: torch.device
    ) -> Tally:
        """A copy whose per-rank sums are summed over ranks."""
        names = sorted(self.sums)
        values = torch.tensor([self.sums[n] for n in names], dtype=torch.float64, device=device)
        result = Tally()
        result.sums = dict(zip(names, all_reduce(values).tolist(), strict=True))
        result.shared = dict(self.shared)
        result.grad_norm_max = self.grad_norm_max
        return result

    def summary(self, updates: int) -> dict[str, float]:
        """Final scalars of a step that made `updates` optimizer updates."""
        out: dict[str, float] = {}
        for name, value in self.sums.items():
            if name.startswith(LOSS_PREFIX):
                out[name] = value / max(updates, 1)
            elif name.endswith("#sum"):
                base = name.removesuffix("#sum")
                out[base] = value / max(self.sums[f"{base}#count"], 1.0)
        finite = updates - int(self.shared.get("grad/nonfinite_updates", 0.0))
        out["grad/norm"] = self.shared.get("grad/norm", 0.0) / max(finite, 1)
        out["grad/norm_max"] = self.grad_norm_max
        out["grad/nonfinite_updates"] = self.shared.get("grad/nonfinite_updates", 0.0)
        sequences = self.shared.get("tokens/sequences", 0.0)
        for name in ("tokens/response", "tokens/total", "tokens/sequences"):
            out[name] = self.shared.get(name, 0.0)
        out["response_length/mean"] = out["tokens/response"] / max(sequences, 1.0)
        return out
