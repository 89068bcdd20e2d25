"""Per-token log-probs of response tokens under the temperature the rollout sampled with.

The backbone runs on prompt + response; only the hidden states that predict response tokens go
through the LM head, in chunks of tokens. With autograd on, each chunk is checkpointed, so the
fp32 `(B, T, V)` logits are never kept for the backward pass (rl-anchors §2.6 pitfall 3: with a
152k vocabulary the logits, not the model, dominate memory).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from mmzero_runtime.training.batch import SequenceBatch

HEAD_CHUNK_TOKENS = 1024
"""Response positions per LM-head chunk: 1024 x 152k fp32 logits is 0.6 GB per sequence."""


def _head_logprobs(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """log softmax(head(hidden) / T)[targets] in fp32, `(B, C)` from hidden `(B, C, H)`."""
    logits: torch.Tensor = head(hidden).float() / temperature  # (B, C, V)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def _head_logprobs_entropy(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropy `(B, C)` of the tempered distribution, without autograd."""
    logits: torch.Tensor = head(hidden).float() / temperature  # (B, C, V)
    normaliser = logits.logsumexp(-1)  # (B, C)
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - normaliser
    probs = (logits - normaliser.unsqueeze(-1)).exp()  # (B, C, V)
    entropy = normaliser - (probs * logits).sum(-1)  # H = logZ - E_p[logit]
    return logprobs, entropy


def response_logprobs(
    model: PreTrainedModel,
    batch: SequenceBatch,
    *,
    temperature: float,
    with_entropy: bool = False,
    chunk_tokens: int = HEAD_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs `(B, R)` of `batch.response_ids`, and their entropy `(B, R)` if asked.

    `model` is a transformers `*ForConditionalGeneration` (its `base_model` is the backbone, its
    output embeddings the LM head). The entropy is a statistic, never differentiated; with
    autograd on it costs one more LM-head product per chunk. Values at padded positions are
    finite but meaningless; `batch.response_mask` marks the real ones.
    """
    if temperature <= 0:
        raise ValueError(f"temperature: got {temperature}; GRPO rollouts are sampled with T > 0")
    backbone = model.base_model
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    if head is None:
        raise ValueError(f"{type(model).__name__} has no LM head; pass a *ForConditionalGeneration")
    outputs = backbone(**batch.model_inputs(), use_cache=False)
    hidden = outputs.last_hidden_state  # (B, L, H)
    rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(-1)  # (B, 1)
    hidden = hidden[rows, batch.positions]  # (B, R, H)
    logprobs, entropies = [], []
    for start in range(0, hidden.shape[1], chunk_tokens):
        part = hidden[:, start : start + chunk_tokens]  # (B, C, H)
        targets = batch.response_ids[:, start : start + chunk_tokens]  # (B, C)
        if not torch.is_grad_enabled() and with_entropy:
            chunk_logprobs, chunk_entropy = _head_logprobs_entropy(head, part, targets, temperature)
            entropies.append(chunk_entropy)
        elif not torch.is_grad_enabled():
            chunk_logprobs = _head_logprobs(head, part, targets, temperature)
        else:
            chunk_logprobs = checkpoint(
                _head_logprobs, head, part, targets, temperature, use_reentrant=False
            )
            if with_entropy:
                with torch.no_grad():
                    _, chunk_entropy = _head_logprobs_entropy(
                        head, part.detach(), targets, temperature
                    )
                entropies.append(chunk_entropy)
        logprobs.append(chunk_logprobs)
    entropy = torch.cat(entropies, dim=1) if with_entropy else None
    return torch.cat(logprobs, dim=1), entropy
