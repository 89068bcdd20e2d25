"""Per-sample seeded sampling inside `model.generate`, recording each chosen token's log-prob.

transformers draws every row of a batch from one global RNG, so a sample would depend on its
neighbours. Here each row owns a `torch.Generator` seeded from (request seed, sample index) and
samples by Gumbel-max (argmax of logits/T + Gumbel noise is a draw from softmax(logits/T)), then
forces that token through generate's greedy step. Log-probs are taken from the raw logits at the
same time, so no `[steps, batch, vocab]` logits tensor is kept (it would not fit at Qwen scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import TopKLogitsWarper, TopPLogitsWarper

from mmzero_runtime.spec import SamplingSpec


class SeededSampler:
    """A logits processor for greedy-mode `generate`: one seeded random stream per row.

    Row `r` consumes exactly one vocabulary-sized draw of its own generator per step, so its
    tokens depend only on its seed and its logits, never on the batch around it. Temperature 0
    takes the argmax and reports log-probs at temperature 1.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        sampling: SamplingSpec,
        device: torch.device,
        banned: Sequence[int] = (),
    ) -> None:
        self.temperature = sampling.temperature
        self.banned = torch.tensor(sorted(banned), dtype=torch.long, device=device)
        """Token ids never chosen (vision placeholders: a response holding one would be read
        as an image slot by the trainer's forward pass)."""
        self.top_k = TopKLogitsWarper(sampling.top_k) if sampling.top_k > 0 else None
        self.top_p = TopPLogitsWarper(sampling.top_p) if sampling.top_p < 1.0 else None
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.tokens: list[torch.Tensor] = []
        """Chosen token per row, one `(B,)` tensor per step."""
        self.logprobs: list[torch.Tensor] = []
        """log softmax(logits / T) at the chosen token, one `(B,)` float32 tensor per step."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scaled = scores.float() / (self.temperature if self.temperature > 0 else 1.0)  # (B, V)
        allowed = scaled.index_fill(-1, self.banned, float("-inf")) if len(self.banned) else scaled
        if self.temperature > 0:
            choice = (self._truncate(input_ids, allowed) + self._gumbel(scaled)).argmax(dim=-1)
        else:
            choice = allowed.argmax(dim=-1)
        # The log-prob is the policy's own (full vocabulary), what the trainer recomputes.
        logprobs = torch.log_softmax(scaled, dim=-1).gather(-1, choice[:, None]).squeeze(-1)
        self.tokens.append(choice)
        self.logprobs.append(logprobs)
        # Only the chosen token stays finite, so generate's argmax cannot pick another one.
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(-1, choice[:, None], 0.0)
        return forced  # type: ignore[return-value]

    def _truncate(self, input_ids: torch.LongTensor, scaled: torch.Tensor) -> torch.Tensor:
        """Top-k, then top-p, with transformers' own warpers (same order as `do_sample`)."""
        truncated = scaled.clone()
        if self.top_k is not None:
            truncated = self.top_k(input_ids, truncated)
        if self.top_p is not None:
            truncated = self.top_p(input_ids, truncated)
        return truncated

    def _gumbel(self, scaled: torch.Tensor) -> torch.Tensor:
        """Standard Gumbel noise `(B, V)`, row `r` drawn from generator `r`."""
        rows, vocab = scaled.shape
        if rows != len(self.generators):
            raise RuntimeError(
                f"sampler built for {len(self.generators)} rows got logits for {rows}; "
                "generate expanded the batch (num_return_sequences must stay 1)"
            )
        uniform = torch.stack(
            [
                torch.rand(vocab, generator=generator, device=scaled.device)
                for generator in self.generators
            ]
        )
        # u = 0 gives -inf noise: that token is never chosen (probability 2**-24 per entry).
        return -torch.log(-torch.log(uniform))
