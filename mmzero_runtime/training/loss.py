"""The GRPO loss: PPO-clipped surrogate with clip-higher and dual clip, plus a KL term.

A pure function of tensors and the role's `GRPOSpec` (STYLE 17), written to the reference's
formulas (EasyR1 `compute_policy_loss` / `compute_kl`, rl-anchors §2.2-2.4, reference §7.1).
Normalisers come from the caller and span the whole global batch, so summing the losses of its
micro-batches (gradient accumulation) equals the loss of the batch in one piece (rl-anchors §2.3).
"""

from __future__ import annotations

import math

import torch

from mmzero_runtime.spec import GRPOSpec

LOG_RATIO_CLAMP = 20.0
"""log(pi / pi_old) and log(pi_ref / pi) are clamped to +-20 before `exp` (verl, EasyR1)."""

LOW_VAR_KL_CLAMP = 10.0
"""k3 is clamped to [-10, 10] (verl, EasyR1); beyond it the KL term has no gradient."""


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kl_type: str) -> torch.Tensor:
    """Per-token KL estimate of the policy against the reference (rl-anchors §2.4), `(B, T)`."""
    match kl_type:
        case "kl":  # k1: unbiased, can be negative
            return logprobs - ref_logprobs
        case "abs":
            return (logprobs - ref_logprobs).abs()
        case "mse":  # k2: its gradient is the true KL gradient
            return 0.5 * (logprobs - ref_logprobs).square()
        case "low_var_kl":  # k3 = exp(q - p) - (q - p) - 1 >= 0, clamped as verl/EasyR1
            diff = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
            return (diff.exp() - diff - 1).clamp(-LOW_VAR_KL_CLAMP, LOW_VAR_KL_CLAMP)
        case _:
            raise ValueError(f"kl_type: got {kl_type!r}; expected low_var_kl, kl, mse or abs")


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    mode: str,
    total_tokens: float,
    total_sequences: int | None,
) -> torch.Tensor:
    """This micro-batch's share of the global-batch average of `values` `(B, T)` under `mask`."""
    match mode:
        case "token_mean":  # sum over tokens / tokens of the global batch (DAPO, reference)
            return (values * mask).sum() / total_tokens
        case "seq_mean_token_mean":  # mean over sequences of per-sequence token means (GRPO paper)
            if total_sequences is None or total_sequences <= 0:
                raise ValueError(
                    "seq_mean_token_mean needs total_sequences, the sequence count of the global "
                    f"batch; got {total_sequences!r}"
                )
            per_sequence = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
            return per_sequence.sum() / total_sequences
        case _:
            raise ValueError(
                f"loss_aggregation: got {mode!r}; expected token_mean or seq_mean_token_mean"
            )


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    spec: GRPOSpec,
    total_tokens: float,
    total_sequences: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO loss of one micro-batch and its stats.

    `logprobs` `(B, T)` carries the gradient; `old_logprobs`, `ref_logprobs` (None when
    `spec.kl_coef` is 0) and `mask` are `(B, T)`; `advantages` is `(B, T)` or `(B, 1)`.
    `total_tokens` (token_mean) and `total_sequences` (seq_mean_token_mean) count the masked
    tokens and sequences of the whole global batch, not of this micro-batch.

    Stats: `loss/*` are this micro-batch's contributions (they sum over micro-batches to the
    global batch's value); every `*_mean` is a mean over this micro-batch's masked tokens.
    """
    if total_tokens <= 0:
        raise ValueError(f"total_tokens: got {total_tokens!r}; the global batch has no tokens")
    mask = mask.to(logprobs.dtype)  # (B, T)
    advantages = advantages.to(logprobs.dtype)  # (B, T) or (B, 1)

    log_ratio = (logprobs - old_logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (B, T)
    ratio = log_ratio.exp()  # (B, T)
    # Clip in log space as EasyR1 does: exp(clamp(.)) has zero gradient outside the band.
    clip_low, clip_high = math.log(1.0 - spec.clip_ratio_low), math.log(1.0 + spec.clip_ratio_high)
    clipped_ratio = log_ratio.clamp(clip_low, clip_high).exp()  # (B, T)
    pg = torch.maximum(-advantages * ratio, -advantages * clipped_ratio)  # (B, T) pessimistic bound
    dual_bound = -advantages * spec.clip_ratio_dual  # (B, T) dual clip, negative advantages only
    pg = torch.where(advantages < 0, torch.minimum(pg, dual_bound), pg)  # (B, T)

    if spec.kl_coef > 0.0:
        if ref_logprobs is None:
            raise ValueError("ref_logprobs is None but spec.kl_coef > 0; pass reference log-probs")
        kl = kl_penalty(logprobs, ref_logprobs, spec.kl_type)  # (B, T)
    else:
        kl = torch.zeros_like(logprobs)  # (B, T)

    def agg(values: torch.Tensor) -> torch.Tensor:
        return aggregate(
            values,
            mask,
            mode=spec.loss_aggregation,
            total_tokens=total_tokens,
            total_sequences=total_sequences,
        )

    policy_loss, kl_loss = agg(pg), agg(kl)
    loss = policy_loss + spec.kl_coef * kl_loss

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)

        def token_mean(values: torch.Tensor) -> torch.Tensor:
            return (values * mask).sum() / tokens

        negative, positive = advantages < 0, advantages > 0  # (B, T) or (B, 1)
        clipped_low = negative & (ratio < 1.0 - spec.clip_ratio_low)  # (B, T)
        clipped_high = positive & (ratio > 1.0 + spec.clip_ratio_high)  # (B, T)
        clipped_dual = negative & (ratio > spec.clip_ratio_dual)  # (B, T)
        values = torch.stack(
            [
                policy_loss,
                spec.kl_coef * kl_loss,
                loss,
                token_mean(clipped_low.to(mask.dtype)),
                token_mean(clipped_high.to(mask.dtype)),
                token_mean(clipped_dual.to(mask.dtype)),
                token_mean(kl),
                token_mean(ratio),
            ]
        ).tolist()  # one device sync for all stats
    names = (
        "loss/policy",
        "loss/kl",
        "loss/total",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/dual_mean",
        "kl/mean",
        "ratio/mean",
    )
    return loss, dict(zip(names, values, strict=True))
