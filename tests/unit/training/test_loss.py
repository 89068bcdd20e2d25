"""The GRPO loss against hand arithmetic and a slow per-token Python computation (rl-anchors §2)."""

from __future__ import annotations

import math

import pytest
import torch

from mmzero_runtime.spec import GRPOSpec
from mmzero_runtime.training.advantages import group_advantages
from mmzero_runtime.training.loss import grpo_loss, kl_penalty

NO_KL = GRPOSpec(kl_coef=0.0)  # clip 0.2 / 0.3, dual 3.0, token_mean


def spec(**changes: object) -> GRPOSpec:
    """The reference GRPO settings with some fields changed (validated)."""
    return GRPOSpec(**changes)  # type: ignore[arg-type]


def token_loss_and_grad(
    lp: float, old: float, ref: float, adv: float, s: GRPOSpec
) -> tuple[float, float]:
    """Slow per-token loss and d loss / d lp, written directly from rl-anchors §2.2 and §2.4."""
    log_ratio = max(-20.0, min(20.0, lp - old))
    ratio = math.exp(log_ratio)
    low, high = math.log(1 - s.clip_ratio_low), math.log(1 + s.clip_ratio_high)
    clipped = math.exp(min(max(log_ratio, low), high))
    unclipped_pg, clipped_pg = -adv * ratio, -adv * clipped
    if unclipped_pg >= clipped_pg:  # the unclipped term is the pessimistic one: it carries grad
        pg, d_pg = unclipped_pg, (-adv * ratio if abs(lp - old) < 20 else 0.0)
    else:  # clipped: constant in lp
        pg, d_pg = clipped_pg, 0.0
    if adv < 0 and pg > -adv * s.clip_ratio_dual:  # dual clip: constant
        pg, d_pg = -adv * s.clip_ratio_dual, 0.0
    if s.kl_coef == 0:
        return pg, d_pg
    match s.kl_type:
        case "kl":
            kl, d_kl = lp - ref, 1.0
        case "abs":
            kl, d_kl = abs(lp - ref), math.copysign(1.0, lp - ref)
        case "mse":
            kl, d_kl = 0.5 * (lp - ref) ** 2, lp - ref
        case _:
            diff = ref - lp
            inner = max(-20.0, min(20.0, diff))
            raw = math.exp(inner) - inner - 1
            kl = max(-10.0, min(10.0, raw))
            inside = abs(diff) < 20 and -10 < raw < 10
            d_kl = (1 - math.exp(diff)) if inside else 0.0
    return pg + s.kl_coef * kl, d_pg + s.kl_coef * d_kl


def slow_loss(
    lp: torch.Tensor,
    old: torch.Tensor,
    ref: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    s: GRPOSpec,
) -> tuple[float, list[list[float]]]:
    """Token-mean loss and gradient by loops over every (sequence, token)."""
    total = float(mask.sum())
    loss, grad = 0.0, [[0.0] * lp.shape[1] for _ in range(lp.shape[0])]
    for b in range(lp.shape[0]):
        for t in range(lp.shape[1]):
            if mask[b, t]:
                value, d = token_loss_and_grad(
                    float(lp[b, t]), float(old[b, t]), float(ref[b, t]), float(adv[b, 0]), s
                )
                loss += value / total
                grad[b][t] = d / total
    return loss, grad


def run(
    lp: list[list[float]],
    adv: list[float],
    s: GRPOSpec,
    *,
    old: list[list[float]] | None = None,
    ref: list[list[float]] | None = None,
    mask: list[list[int]] | None = None,
) -> tuple[float, torch.Tensor, dict[str, float]]:
    """Loss, gradient and stats of grpo_loss on small float64 tensors."""
    logprobs = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
    zeros = [[0.0] * len(lp[0]) for _ in lp]
    old_t = torch.tensor(old or zeros, dtype=torch.float64)
    ref_t = torch.tensor(ref or zeros, dtype=torch.float64)
    mask_t = torch.tensor(mask or [[1] * len(lp[0]) for _ in lp])
    loss, stats = grpo_loss(
        logprobs,
        old_t,
        ref_t,
        torch.tensor(adv, dtype=torch.float64)[:, None],
        mask_t,
        spec=s,
        total_tokens=float(mask_t.sum()),
        total_sequences=len(lp),
    )
    loss.backward()
    assert logprobs.grad is not None
    return float(loss.detach()), logprobs.grad, stats


L = math.log


@pytest.mark.parametrize(
    ("lp", "adv", "loss", "grad", "clipped"),
    [
        # ratio 1.1 inside [0.8, 1.3], A=+1: loss -A*r = -1.1, grad -A*r = -1.1
        pytest.param(L(1.1), 1.0, -1.1, -1.1, None, id="inside-positive"),
        # ratio 1.5 > 1.3, A=+1: max(-1.5, -1.3) = -1.3 (clipped, constant), grad 0
        pytest.param(L(1.5), 1.0, -1.3, 0.0, "high", id="clip-high"),
        # ratio 0.5 < 0.8, A=+1: max(-0.5, -0.8) = -0.5: clip does not bind, grad -0.5
        pytest.param(L(0.5), 1.0, -0.5, -0.5, None, id="low-ratio-positive-unclipped"),
        # ratio 0.5 < 0.8, A=-1: max(0.5, 0.8) = 0.8 (clipped), grad 0
        pytest.param(L(0.5), -1.0, 0.8, 0.0, "low", id="clip-low"),
        # ratio 2 in (1.3, 3), A=-1: max(2, 1.3) = 2, dual bound 3 does not bind, grad -A*r = 2
        pytest.param(L(2.0), -1.0, 2.0, 2.0, None, id="negative-below-dual"),
        # ratio 4 > 3, A=-1: max(4, 1.3) = 4, min(4, 3) = 3 (dual clip), grad 0
        pytest.param(L(4.0), -1.0, 3.0, 0.0, "dual", id="dual-clip"),
        # ratio 4 > 1.3, A=+2: max(-8, -2.6) = -2.6 (high clip; dual is for A<0 only)
        pytest.param(L(4.0), 2.0, -2.6, 0.0, "high", id="positive-no-dual"),
        # log-ratio 25 clamps to 20, A=-0.5: ratio e^20 > 3 so dual clip: 0.5*3 = 1.5, grad 0
        pytest.param(25.0, -0.5, 1.5, 0.0, "dual", id="log-ratio-clamp"),
        # A=0 (zero-variance group kept): loss 0, grad 0
        pytest.param(L(1.1), 0.0, 0.0, 0.0, None, id="zero-advantage"),
    ],
)
def test_grpo_loss_single_token_matches_hand_arithmetic(
    lp: float, adv: float, loss: float, grad: float, clipped: str | None
) -> None:
    value, gradient, stats = run([[lp]], [adv], NO_KL)
    assert value == pytest.approx(loss, rel=1e-12)
    assert float(gradient[0, 0]) == pytest.approx(grad, rel=1e-12, abs=1e-12)
    for kind in ("low", "high", "dual"):
        assert stats[f"clip_ratio/{kind}_mean"] == (1.0 if kind == clipped else 0.0)
    assert stats["loss/kl"] == 0.0


@pytest.mark.parametrize(
    ("kl_type", "lp", "ref", "kl", "d_kl"),
    [
        # k1 = p - q = 0 - ln2 = -0.6931, d/dp = 1
        pytest.param("kl", 0.0, L(2.0), -L(2.0), 1.0, id="k1"),
        # |p - q| = ln2, d/dp = sign(p - q) = -1
        pytest.param("abs", 0.0, L(2.0), L(2.0), -1.0, id="abs"),
        # k2 = 0.5 (p - q)^2 = 0.5 ln2^2 = 0.2402, d/dp = p - q = -ln2
        pytest.param("mse", 0.0, L(2.0), 0.5 * L(2.0) ** 2, -L(2.0), id="k2"),
        # k3 = e^(q-p) - (q-p) - 1 = 2 - ln2 - 1 = 0.3069, d/dp = 1 - e^(q-p) = -1
        pytest.param("low_var_kl", 0.0, L(2.0), 2 - L(2.0) - 1, -1.0, id="k3"),
        # q-p = 15: e^15 - 16 = 3.27e6 > 10, clamped to 10, no gradient
        pytest.param("low_var_kl", 0.0, 15.0, 10.0, 0.0, id="k3-clamp-high"),
        # q-p = -30 clamps to -20: e^-20 + 20 - 1 = 19.0 > 10, clamped to 10, no gradient
        pytest.param("low_var_kl", 30.0, 0.0, 10.0, 0.0, id="k3-inner-clamp"),
    ],
)
def test_grpo_loss_kl_term_matches_hand_arithmetic(
    kl_type: str, lp: float, ref: float, kl: float, d_kl: float
) -> None:
    s = spec(kl_coef=0.5, kl_type=kl_type)
    # old = lp so the ratio is 1 and A = 0: the policy term is 0 and has no gradient.
    value, gradient, stats = run([[lp]], [0.0], s, old=[[lp]], ref=[[ref]])
    assert value == pytest.approx(0.5 * kl, rel=1e-12)
    assert float(gradient[0, 0]) == pytest.approx(0.5 * d_kl, rel=1e-12, abs=1e-12)
    assert stats["kl/mean"] == pytest.approx(kl, rel=1e-12)
    assert stats["loss/kl"] == pytest.approx(0.5 * kl, rel=1e-12)


@pytest.mark.parametrize("kl_type", ["kl", "abs", "mse", "low_var_kl"])
def test_grpo_loss_random_batch_equals_slow_per_token_loop(kl_type: str) -> None:
    generator = torch.Generator().manual_seed(0)
    lp = -torch.rand(3, 5, generator=generator, dtype=torch.float64) * 3
    old = lp + torch.randn(3, 5, generator=generator, dtype=torch.float64) * 0.6
    ref = lp + torch.randn(3, 5, generator=generator, dtype=torch.float64) * 2
    adv = torch.tensor([[1.5], [-0.7], [-2.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    s = spec(kl_coef=0.1, kl_type=kl_type)
    expected, expected_grad = slow_loss(lp, old, ref, adv, mask, s)
    value, gradient, _ = run(
        lp.tolist(), adv[:, 0].tolist(), s, old=old.tolist(), ref=ref.tolist(), mask=mask.tolist()
    )
    assert value == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(gradient, torch.tensor(expected_grad, dtype=torch.float64))


def test_grpo_loss_masked_tokens_neither_count_nor_contribute() -> None:
    # Token 2 is masked and holds an extreme ratio (e^5) and KL: only tokens 0 and 1 count.
    # A=+1, ratios 1.0 and 1.2: loss = (-1.0 - 1.2) / 2 = -1.1; grads -1/2 and -1.2/2, 0.
    lp = [[0.0, L(1.2), 5.0]]
    value, gradient, stats = run(lp, [1.0], NO_KL, mask=[[1, 1, 0]])
    assert value == pytest.approx(-1.1)
    torch.testing.assert_close(gradient, torch.tensor([[-0.5, -0.6, 0.0]], dtype=torch.float64))
    assert stats["clip_ratio/high_mean"] == 0.0  # the masked ratio e^5 would be clipped
    assert stats["ratio/mean"] == pytest.approx(1.1)


def test_grpo_loss_seq_mean_token_mean_averages_sequences_first() -> None:
    # A=+1, ratios inside the band: per-token loss = -ratio.
    # sequence 0: one token, ratio 1.2 -> mean -1.2; sequence 1: three tokens, ratio 1 -> mean -1
    # seq-mean: (-1.2 - 1) / 2 = -1.1; token-mean would be (-1.2 - 3) / 4 = -1.05
    # grad seq 0: -1.2 / 1 / 2 = -0.6; seq 1 each: -1 / 3 / 2 = -1/6
    lp = [[L(1.2), 0.0, 0.0], [0.0, 0.0, 0.0]]
    mask = [[1, 0, 0], [1, 1, 1]]
    value, gradient, _ = run(
        lp, [1.0, 1.0], spec(kl_coef=0.0, loss_aggregation="seq_mean_token_mean"), mask=mask
    )
    assert value == pytest.approx(-1.1)
    torch.testing.assert_close(
        gradient, torch.tensor([[-0.6, 0.0, 0.0], [-1 / 6, -1 / 6, -1 / 6]], dtype=torch.float64)
    )
    token_value, _, _ = run(lp, [1.0, 1.0], NO_KL, mask=mask)
    assert token_value == pytest.approx(-1.05)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean"])
def test_grpo_loss_two_micro_batches_accumulate_to_one_batch(aggregation: str) -> None:
    s = spec(kl_coef=0.01, loss_aggregation=aggregation)
    generator = torch.Generator().manual_seed(1)
    lp = -torch.rand(4, 6, generator=generator)
    old = lp + torch.randn(4, 6, generator=generator) * 0.3
    ref = lp + torch.randn(4, 6, generator=generator) * 0.3
    adv = torch.tensor([[1.0], [-1.0], [0.5], [-0.5]])
    # lengths 6, 1, 3, 2: unequal, so a per-micro-batch mean would weight tokens differently
    mask = torch.tensor([[1] * 6, [1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    total = dict(total_tokens=float(mask.sum()), total_sequences=4)

    whole = lp.clone().requires_grad_(True)
    loss, _ = grpo_loss(whole, old, ref, adv, mask, spec=s, **total)
    loss.backward()

    parts = lp.clone().requires_grad_(True)
    accumulated = 0.0
    for rows in (slice(0, 2), slice(2, 4)):
        part, _ = grpo_loss(
            parts[rows], old[rows], ref[rows], adv[rows], mask[rows], spec=s, **total
        )
        part.backward()
        accumulated += float(part.detach())
    assert accumulated == pytest.approx(float(loss.detach()), rel=1e-6)
    assert whole.grad is not None and parts.grad is not None
    torch.testing.assert_close(parts.grad, whole.grad)

    # Normalising each micro-batch by its own tokens (the pitfall) gives a different gradient.
    naive = lp.clone().requires_grad_(True)
    for rows in (slice(0, 2), slice(2, 4)):
        local = dict(total_tokens=float(mask[rows].sum()), total_sequences=2)
        part, _ = grpo_loss(
            naive[rows], old[rows], ref[rows], adv[rows], mask[rows], spec=s, **local
        )
        (part / 2).backward()
    assert naive.grad is not None
    if aggregation == "token_mean":
        assert not torch.allclose(naive.grad, whole.grad)


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_grpo_loss_zero_variance_group_keep_dilutes_drop_excludes(mode: str) -> None:
    # Group a: rewards 1, 0 -> mean 0.5, unbiased std 0.7071: advantages +-0.5/0.7071 = +-0.7071.
    # Group b: rewards 1, 1 -> zero variance: advantage 0 (keep) or excluded (drop).
    adv = group_advantages([1.0, 0.0, 1.0, 1.0], ["a", "a", "b", "b"], eps=1e-6, zero_variance=mode)
    assert adv.zero_variance_groups == 1
    assert adv.values.tolist() == pytest.approx(
        [math.sqrt(0.5), -math.sqrt(0.5), 0.0, 0.0], rel=1e-5
    )
    # Every sequence has two tokens at ratio 1.1 (A>0: -1.1 A; A<0: max(1.1, 0.8)|A| = 1.1|A|),
    # so the loss numerator is 2 x (-1.1 x 0.7071) + 2 x (1.1 x 0.7071) = 0: check the gradient.
    lp = torch.full((4, 2), L(1.1), requires_grad=True)
    mask = adv.included[:, None].expand(4, 2).long()
    loss, _ = grpo_loss(
        lp,
        torch.zeros(4, 2),
        None,
        adv.values[:, None],
        mask,
        spec=NO_KL,
        total_tokens=float(mask.sum()),
    )
    loss.backward()
    assert lp.grad is not None
    # d/dlp of -A r for A=+0.7071, r=1.1: -0.7778 per token, over 8 (keep) or 4 (drop) tokens
    tokens = 8 if mode == "keep" else 4
    expected = -math.sqrt(0.5) * 1.1 / tokens
    assert float(lp.grad[0, 0]) == pytest.approx(expected, rel=1e-5)
    assert float(lp.grad[2, 0]) == 0.0


def test_grpo_loss_unknown_variants_raise() -> None:
    lp = torch.zeros(1, 1)
    bad_kl = GRPOSpec().model_copy(update={"kl_type": "full"})
    with pytest.raises(ValueError, match="kl_type"):
        grpo_loss(lp, lp, lp, lp, lp, spec=bad_kl, total_tokens=1.0)
    bad_mode = NO_KL.model_copy(update={"loss_aggregation": "seq_mean_token_sum"})
    with pytest.raises(ValueError, match="loss_aggregation"):
        grpo_loss(lp, lp, None, lp, lp, spec=bad_mode, total_tokens=1.0)
    with pytest.raises(ValueError, match="kl_type"):
        kl_penalty(lp, lp, "k4")


def test_grpo_loss_missing_reference_or_empty_batch_raises() -> None:
    lp = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(lp, lp, None, lp, lp, spec=GRPOSpec(), total_tokens=1.0)
    with pytest.raises(ValueError, match="total_tokens"):
        grpo_loss(lp, lp, None, lp, lp, spec=NO_KL, total_tokens=0.0)
    seq = NO_KL.model_copy(update={"loss_aggregation": "seq_mean_token_mean"})
    with pytest.raises(ValueError, match="total_sequences"):
        grpo_loss(lp, lp, None, lp, lp, spec=seq, total_tokens=1.0)
