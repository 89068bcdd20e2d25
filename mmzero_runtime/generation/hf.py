"""The in-process transformers backend: batched, KV-cached `model.generate` behind `Generator`.

Prompts go through `models.inputs.encode` (the one preprocessing path) once per request; a
prompt over `max_prompt_tokens` is dropped with `prompt_too_long`, never truncated (user-asks
§6.6). Each sample draws from its own seeded stream (`SeededSampler`); by default a model call
holds one request's samples only, so the same request gives the same tokens bit for bit
whatever else is in the run (same machine, `batch_size` and torch thread count;
`batching="mixed"` trades that for throughput, benchmarks/RESULTS.md). The checkpoint's own
generation defaults (Qwen ships a repetition penalty) are ignored: the request's `SamplingSpec`
is the whole distribution, so rollout and trainer log-probs agree. One call at a time per model:
`generate` swaps the model's generation config and eval mode for its duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList

from mmzero_runtime.generation.base import (
    GenerationRequest,
    GenerationResult,
    Progress,
    ProgressCallback,
    Sample,
    check_unique_ids,
    join_results,
)
from mmzero_runtime.generation.batching import Batching, Row, plan_batches
from mmzero_runtime.generation.errors import ImageReadError
from mmzero_runtime.generation.images import load_image
from mmzero_runtime.generation.sampler import SeededSampler
from mmzero_runtime.models.inputs import encode
from mmzero_runtime.spec import ImageSpec

log = logging.getLogger(__name__)

SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")
"""Encoding entries aligned with the prompt tokens: left-padded when rows are stacked. Every
other entry (`pixel_values`, `image_grid_thw`) is concatenated in row order."""

MIXED_WINDOW_CALLS = 4
"""With `mixed` batching, requests are encoded and planned in windows of about this many full
model calls: enough to fill calls of equal settings, few enough to bound pixel memory."""

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
"""Tokens that end a response besides the tokenizer's EOS (end of the assistant turn)."""


@dataclass
class _Tally:
    """Running totals of one `generate` call, reported to its progress callback."""

    total: int
    start: float
    on_progress: ProgressCallback | None
    done: int = 0
    tokens: int = 0

    def advance(self, samples: int, tokens: int) -> None:
        self.done += samples
        self.tokens += tokens
        if self.on_progress is not None and samples:
            seconds = time.perf_counter() - self.start
            self.on_progress(Progress(self.done, self.total, self.tokens, seconds))


@dataclass(frozen=True)
class _Prompt:
    """A request's encoded prompt (a batch of one), or why it has none."""

    inputs: Mapping[str, torch.Tensor] | None
    prompt_tokens: int
    failure: GenerationResult | None = None


class HFGenerator:
    """`Generator` over a transformers VLM held in this process (CPU or one GPU)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        image_spec: ImageSpec,
        max_prompt_tokens: int,
        batch_size: int,
        model_digest: str,
        batching: Batching = "request",
    ) -> None:
        if max_prompt_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"max_prompt_tokens {max_prompt_tokens}, batch_size {batch_size}: both must be "
                ">= 1; set them from the role's GRPO spec"
            )
        self.model = model
        self.processor = processor
        self.image_spec = image_spec
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = batch_size
        self.batching: Batching = batching
        self._digest = model_digest
        tokenizer = processor.tokenizer
        stops = {tokenizer.convert_tokens_to_ids(token) for token in STOP_TOKENS}
        stops.add(tokenizer.eos_token_id)
        unknown = tokenizer.unk_token_id
        self.stop_ids = frozenset(i for i in stops if isinstance(i, int) and i != unknown)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else min(self.stop_ids)
        config = model.config
        self.banned_ids = (
            config.image_token_id,
            config.video_token_id,
            config.vision_start_token_id,
            config.vision_end_token_id,
        )
        """Vision placeholder ids, never sampled (the trainer refuses responses holding them)."""

    @property
    def model_digest(self) -> str:
        return self._digest

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[GenerationResult]:
        """One result per request, in order; image and length failures lose only their request."""
        check_unique_ids(requests)
        tally = _Tally(sum(request.n for request in requests), time.perf_counter(), on_progress)
        results: list[GenerationResult] = []
        with self._generation_mode():
            for window in self._windows(requests):
                results.extend(self._generate_window(window, tally))
        wall = time.perf_counter() - tally.start
        log.info(
            "Generated requests=%d failed=%d samples=%d tokens=%d seconds=%.2f tokens_per_s=%.0f",
            len(requests), sum(not r.ok for r in results), tally.done, tally.tokens, wall,
            tally.tokens / wall if wall else 0.0,
        )  # fmt: skip
        return join_results(requests, results, model_digest=self._digest)

    def _windows(self, requests: Sequence[GenerationRequest]) -> Iterator[list[GenerationRequest]]:
        """Consecutive requests encoded and generated together, so only their pixels are held
        in memory (a 2048^2 image is ~100 MB of fp32 patches): one request at a time with
        `request` batching, about `MIXED_WINDOW_CALLS` full calls' worth with `mixed`."""
        rows_wanted = 1 if self.batching == "request" else MIXED_WINDOW_CALLS * self.batch_size
        window: list[GenerationRequest] = []
        for request in requests:
            window.append(request)
            if sum(item.n for item in window) >= rows_wanted:
                yield window
                window = []
        if window:
            yield window

    def _generate_window(
        self, requests: Sequence[GenerationRequest], tally: _Tally
    ) -> list[GenerationResult]:
        prompts = [self._encode(request) for request in requests]
        failed = frozenset(i for i, prompt in enumerate(prompts) if prompt.failure is not None)
        tally.advance(sum(requests[i].n for i in failed), 0)
        calls = plan_batches(
            requests,
            [prompt.prompt_tokens for prompt in prompts],
            batch_size=self.batch_size,
            batching=self.batching,
            skip=failed,
        )
        samples: dict[tuple[int, int], Sample] = {}
        seconds = [0.0] * len(requests)
        for rows in calls:
            call_start = time.perf_counter()
            drawn = self._sample(rows, requests, prompts)
            elapsed = time.perf_counter() - call_start
            for row, sample in zip(rows, drawn, strict=True):
                samples[row.request, row.sample] = sample
            for index in {row.request for row in rows}:
                seconds[index] += elapsed
            tally.advance(len(rows), sum(len(sample.token_ids) for sample in drawn))
        return [
            self._result(i, request, prompts[i], samples, seconds[i])
            for i, request in enumerate(requests)
        ]

    def _result(
        self,
        index: int,
        request: GenerationRequest,
        prompt: _Prompt,
        samples: Mapping[tuple[int, int], Sample],
        seconds: float,
    ) -> GenerationResult:
        if prompt.failure is not None:
            return prompt.failure
        drawn = tuple(samples[index, i] for i in range(request.n))
        return GenerationResult(
            request.id, drawn, prompt.prompt_tokens, self._digest, None, "", seconds
        )

    def _encode(self, request: GenerationRequest) -> _Prompt:
        """The request's model inputs, or its failure (unreadable image, prompt too long)."""
        try:
            images = [load_image(path, request_id=request.id) for path in request.images]
        except ImageReadError as error:
            log.warning("Request failed reason=%s detail=%s", error.reason, error.detail)
            return _Prompt(None, 0, self._failure(request, 0, error.reason, error.detail))
        inputs = encode(self.processor, request.messages, images, image_spec=self.image_spec)
        length = int(inputs["input_ids"].shape[1])
        if length > self.max_prompt_tokens:
            detail = (
                f"request {request.id!r}: prompt has {length} tokens (image tokens included), "
                f"over max_prompt_tokens {self.max_prompt_tokens}; it is dropped, not truncated; "
                "shorten the prompt, lower the image pixel budget or raise the limit"
            )
            log.warning("Request failed reason=prompt_too_long detail=%s", detail)
            return _Prompt(None, length, self._failure(request, length, "prompt_too_long", detail))
        return _Prompt(dict(inputs), length)

    def _failure(
        self, request: GenerationRequest, prompt_tokens: int, reason: Any, detail: str
    ) -> GenerationResult:
        return GenerationResult(request.id, (), prompt_tokens, self._digest, reason, detail)

    @contextmanager
    def _generation_mode(self) -> Iterator[None]:
        """Eval mode and a bare generation config for the duration of a call, then restored.

        generate() fills every unset option from `model.generation_config`, so a checkpoint's
        repetition penalty or suppressed tokens would silently reshape the distribution.
        """
        model = self.model
        saved_config, was_training = model.generation_config, model.training
        model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
            bos_token_id=saved_config.bos_token_id,
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=self.pad_id,
        )
        model.eval()
        try:
            yield
        finally:
            model.generation_config = saved_config
            model.train(was_training)

    def _sample(
        self, rows: Sequence[Row], requests: Sequence[GenerationRequest], prompts: Sequence[_Prompt]
    ) -> list[Sample]:
        """One model call: the samples of `rows`, which share one `SamplingSpec`."""
        sampling = requests[rows[0].request].sampling
        inputs = stack_inputs([prompts[row.request].inputs for row in rows], self.pad_id)
        device = self.model.device
        inputs = {key: value.to(device) for key, value in inputs.items()}
        sampler = SeededSampler([row.seed for row in rows], sampling, device, self.banned_ids)
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=sampling.max_tokens,
            do_sample=False,  # SeededSampler draws; generate's greedy step takes its choice
            num_beams=1,
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=self.pad_id,
            use_cache=True,
        )
        sequences = self.model.generate(
            **inputs, generation_config=config, logits_processor=LogitsProcessorList([sampler])
        )
        generated = sequences[:, inputs["input_ids"].shape[1] :].cpu()
        return self._to_samples(generated, sampler)

    def _to_samples(self, generated: torch.Tensor, sampler: SeededSampler) -> list[Sample]:
        """Cut each row after its first stop token and check generate kept the sampler's picks."""
        chosen = torch.stack(sampler.tokens, dim=1).cpu()  # (B, steps)
        logprobs = torch.stack(sampler.logprobs, dim=1).cpu()  # (B, steps)
        if chosen.shape != generated.shape:
            raise RuntimeError(
                f"generate returned {tuple(generated.shape)} new tokens but the sampler chose "
                f"{tuple(chosen.shape)}; a generate option changed the decoding loop"
            )
        rows: list[tuple[list[int], list[float], bool]] = []
        for tokens, row_chosen, row_logprobs in zip(
            generated.tolist(), chosen.tolist(), logprobs.tolist(), strict=True
        ):
            end = next((i + 1 for i, token in enumerate(tokens) if token in self.stop_ids), None)
            length = len(tokens) if end is None else end
            if tokens[:length] != row_chosen[:length]:
                raise RuntimeError(
                    "generate emitted tokens other than the sampler's choice; another logits "
                    "processor ran after it, so the reported log-probs would be wrong"
                )
            rows.append((tokens[:length], row_logprobs[:length], end is not None))
        texts = self.processor.tokenizer.batch_decode(
            [tokens for tokens, _, _ in rows], skip_special_tokens=True
        )
        return [
            Sample(text, tuple(tokens), tuple(row_logprobs), "stop" if stopped else "length")
            for text, (tokens, row_logprobs, stopped) in zip(texts, rows, strict=True)
        ]


def stack_inputs(
    encodings: Sequence[Mapping[str, torch.Tensor] | None], pad_id: int
) -> dict[str, torch.Tensor]:
    """Batches of one stacked into one batch: prompt-aligned entries left-padded (`pad_id` for
    token ids, 0 for masks), everything else concatenated in row order."""
    present = [encoding for encoding in encodings if encoding is not None]
    if len(present) != len(encodings):
        raise RuntimeError("a failed request was scheduled for generation")
    width = max(int(encoding["input_ids"].shape[1]) for encoding in present)
    keys = list(dict.fromkeys(key for encoding in present for key in encoding))
    stacked: dict[str, torch.Tensor] = {}
    for key in keys:
        parts = [encoding[key] for encoding in present if key in encoding]
        if key in SEQUENCE_KEYS:
            fill = pad_id if key == "input_ids" else 0
            parts = [
                torch.nn.functional.pad(part, (width - part.shape[1], 0), value=fill)
                for part in parts
            ]
        stacked[key] = torch.cat(parts, dim=0)
    return stacked
