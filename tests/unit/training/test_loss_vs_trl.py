"""Our GRPO loss against TRL 1.16's own loss code on identical tensors.

TRL computes its loss in `GRPOTrainer._compute_loss(model, inputs)`. We call that function with
a stub trainer whose `_get_per_token_logps_and_entropies` returns our log-prob tensor, so TRL's
own surrogate, KL and aggregation run unchanged. Settings: `loss_type="dapo"` (global token
mean, the reference's `token_mean`), epsilon 0.2 / epsilon_high 0.3, beta 0.01 (k3 KL).

Definitional differences, each pinned by a test below: TRL has no dual clip (ours bounds the loss
of a negative-advantage token at 3|A|), and TRL does not clamp k3 (ours clamps it to [-10, 10]
as verl/EasyR1). Equality tests therefore keep ratios below 3 and |log q - log p| small.
TRL is imported only here (the `compare` dependency group); importing it takes seconds.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from mmzero_runtime.spec import GRPOSpec
from mmzero_runtime.training.loss import grpo_loss

pytestmark = pytest.mark.slow  # `import trl` alone takes 10-30 s on the 2-core machine

SPEC = GRPOSpec()  # clip 0.2 / 0.3, dual 3.0, kl_coef 0.01 low_var_kl, token_mean


class Accelerator:
    """One process: gather and reduce are the identity."""

    num_processes = 1

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor


def trl_loss(
    logprobs: torch.Tensor,
    old: torch.Tensor,
    ref: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str = "dapo",
    num_items: float,
    accumulation: int = 1,
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """TRL's `_compute_loss` on these tensors; `(B, T)` inputs, `(B,)` advantages."""
    trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
    rows = logprobs.shape[0]
    stub: Any = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (
            logprobs,
            torch.zeros_like(logprobs),
            None,
        ),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=0.01,
        args=SimpleNamespace(
            use_bias_correction_kl=False, delta=None, steps_per_generation=accumulation
        ),
        loss_type=loss_type,
        epsilon_low=0.2,
        epsilon_high=0.3,
        use_vllm=False,
        model=SimpleNamespace(training=True),
        accelerator=Accelerator(),
        current_gradient_accumulation_steps=accumulation,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list)},
    )
    inputs = {
        "prompt_ids": torch.zeros(rows, 1, dtype=torch.long),
        "prompt_mask": torch.ones(rows, 1, dtype=torch.long),
        "completion_ids": torch.zeros_like(mask, dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": torch.tensor(num_items),
    }
    loss = trl_grpo.GRPOTrainer._compute_loss(stub, None, inputs)
    return loss, stub._metrics["train"]


def tensors(seed: int, rows: int = 4, width: int = 7) -> tuple[torch.Tensor, ...]:
    """Log-probs near their old and reference values (ratios in [0.55, 1.8], below the dual
    bound 3), both advantage signs, ragged masks."""
    generator = torch.Generator().manual_seed(seed)
    logprobs = -torch.rand(rows, width, generator=generator) * 4
    old = logprobs + (torch.rand(rows, width, generator=generator) - 0.5) * 1.2
    ref = logprobs + (torch.rand(rows, width, generator=generator) - 0.5) * 2.0
    advantages = torch.tensor([1.2, -0.8, 0.4, -1.5])[:rows]
    lengths = torch.tensor([7, 3, 5, 1])[:rows]
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    return logprobs, old, ref, advantages, mask


def test_grpo_loss_equals_trl_dapo_loss_value_gradient_and_clip_stats() -> None:
    lp, old, ref, adv, mask = tensors(0)
    ours_lp, trl_lp = lp.clone().requires_grad_(True), lp.clone().requires_grad_(True)
    ours, stats = grpo_loss(
        ours_lp, old, ref, adv[:, None], mask, spec=SPEC, total_tokens=float(mask.sum())
    )
    theirs, metrics = trl_loss(trl_lp, old, ref, adv, mask, num_items=float(mask.sum()))
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours.detach(), theirs.detach())
    assert ours_lp.grad is not None and trl_lp.grad is not None
    torch.testing.assert_close(ours_lp.grad, trl_lp.grad)
    assert stats["clip_ratio/low_mean"] == pytest.approx(metrics["clip_ratio/low_mean"][0])
    assert stats["clip_ratio/high_mean"] == pytest.approx(metrics["clip_ratio/high_mean"][0])
    assert stats["clip_ratio/low_mean"] > 0 and stats["clip_ratio/high_mean"] > 0  # both bind
    assert stats["kl/mean"] == pytest.approx(metrics["kl"][0], rel=1e-6)


def test_grpo_loss_accumulated_equals_trl_with_gradient_accumulation() -> None:
    # TRL dapo with 2 accumulation steps per generation batch divides every micro-batch by the
    # generation batch's token count; ours gets total_tokens of the global batch: same thing.
    lp, old, ref, adv, mask = tensors(1)
    total = float(mask.sum())
    ours_lp, trl_lp = lp.clone().requires_grad_(True), lp.clone().requires_grad_(True)
    ours_sum, trl_sum = 0.0, 0.0
    for rows in (slice(0, 2), slice(2, 4)):
        ours, _ = grpo_loss(
            ours_lp[rows],
            old[rows],
            ref[rows],
            adv[rows, None],
            mask[rows],
            spec=SPEC,
            total_tokens=total,
        )
        theirs, _ = trl_loss(
            trl_lp[rows],
            old[rows],
            ref[rows],
            adv[rows],
            mask[rows],
            num_items=total,
            accumulation=2,
        )
        ours.backward()
        theirs.backward()
        ours_sum, trl_sum = ours_sum + float(ours.detach()), trl_sum + float(theirs.detach())
    assert ours_sum == pytest.approx(trl_sum, rel=1e-6)
    assert ours_lp.grad is not None and trl_lp.grad is not None
    torch.testing.assert_close(ours_lp.grad, trl_lp.grad)


def test_grpo_loss_seq_mean_token_mean_equals_trl_grpo_loss_type() -> None:
    lp, old, ref, adv, mask = tensors(2)
    spec = SPEC.model_copy(update={"loss_aggregation": "seq_mean_token_mean"})
    ours, _ = grpo_loss(
        lp,
        old,
        ref,
        adv[:, None],
        mask,
        spec=spec,
        total_tokens=float(mask.sum()),
        total_sequences=4,
    )
    theirs, _ = trl_loss(lp, old, ref, adv, mask, loss_type="grpo", num_items=float(mask.sum()))
    torch.testing.assert_close(ours, theirs)


def test_grpo_loss_differs_from_trl_only_by_dual_clip_and_k3_clamp() -> None:
    # One token, A = -1, old = 0. log p = ln 4: ratio 4 > 3. TRL: -min(4 x -1, 1.3 x -1) = 4;
    # ours: min(4, 3) = 3 (dual clip). KL: log q = log p (k3 = 0), so only the dual clip differs.
    lp = torch.tensor([[torch.log(torch.tensor(4.0))]])
    zero, adv, mask = torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1, dtype=torch.long)
    ours, stats = grpo_loss(lp, zero, lp, adv[:, None], mask, spec=SPEC, total_tokens=1.0)
    theirs, _ = trl_loss(lp, zero, lp, adv, mask, num_items=1.0)
    assert float(ours) == pytest.approx(3.0) and float(theirs) == pytest.approx(4.0)
    assert stats["clip_ratio/dual_mean"] == 1.0
    # log q - log p = 15: k3 = e^15 - 16 = 3.3e6 unclamped (TRL) vs 10 (ours); A = 0.
    ref = torch.tensor([[15.0]])
    ours, _ = grpo_loss(zero, zero, ref, torch.zeros(1, 1), mask, spec=SPEC, total_tokens=1.0)
    theirs, _ = trl_loss(zero, zero, ref, torch.zeros(1), mask, num_items=1.0)
    assert float(ours) == pytest.approx(0.01 * 10.0)
    assert float(theirs) == pytest.approx(0.01 * (torch.e**15 - 16), rel=1e-5)
