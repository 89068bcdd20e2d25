"""The one generation interface every stage samples through: requests in, results by id out.

A request carries content (chat messages, local PNG paths that only the backend reads, `n`,
sampling settings, a seed), never tensors, so the in-process transformers backend and an
OpenAI-compatible HTTP backend (images sent as base64 data URLs) are interchangeable. Results
come back in request order, each naming its request and the checkpoint digest that produced it;
`join_results` is the check a caller runs before any result touches a reward (user-asks §6.10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from mmzero_runtime.generation.errors import (
    DuplicateRequestIdError,
    FailureReason,
    GenerationRequestError,
    ResultMismatchError,
)
from mmzero_runtime.roles import ChatMessage
from mmzero_runtime.spec import SamplingSpec

MAX_SEED = 2**63 - 1
"""Largest request seed: seeds travel as signed 64-bit integers (torch, vLLM, JSON)."""

FinishReason = Literal["stop", "length"]
"""`stop`: the model ended with EOS or `<|im_end|>`; `length`: it hit `max_tokens`."""


def sample_seeds(seed: int, n: int) -> tuple[int, ...]:
    """One distinct seed per sample of a request, so grouped samples never share a seed.

    Sample `i` depends only on (`seed`, `i`), not on `n`, so every backend draws sample `i` from
    the same stream and a request with a larger `n` extends, not reshuffles, a smaller one
    (rl-anchors §2.6 item 9: a shared seed makes the whole group identical).

    >>> seeds = sample_seeds(7, 3)
    >>> len(set(seeds)), seeds[:2] == sample_seeds(7, 2), all(0 <= s <= MAX_SEED for s in seeds)
    (3, True, True)
    """
    seeds = []
    for index in range(n):
        digest = hashlib.blake2b(f"{seed}/{index}".encode(), digest_size=8).digest()
        seeds.append(int.from_bytes(digest, "big") & MAX_SEED)
    return tuple(seeds)


def image_count(messages: Sequence[ChatMessage]) -> int:
    """Number of image placeholders in the messages; it must equal the number of image files."""
    return sum(part["type"] == "image" for message in messages for part in message["content"])


@dataclass(frozen=True)
class GenerationRequest:
    """`n` samples of one prompt: chat messages plus the image files their placeholders stand for.

    Construction checks the shape (id, `n`, seed, one file per placeholder) and raises
    `GenerationRequestError`; whether the files exist and decode is a per-item outcome checked by
    the backend (`image_missing`, `image_unreadable`), so one bad render loses only its request.
    """

    id: str
    """Unique within one `generate` call; the result carries it back."""
    messages: Sequence[ChatMessage]
    """Built by the role prompt builders (`mmzero_runtime.roles`); rendered by the backend."""
    images: tuple[Path, ...]
    """Local PNG files, in placeholder order; read only inside the backend."""
    n: int
    """Samples to draw; each gets its own seed from `sample_seeds(seed, n)`."""
    sampling: SamplingSpec
    """Temperature (0 = greedy), top-p, top-k and the response token limit."""
    seed: int
    """Seeds every random choice of this request, in [0, 2**63 - 1]; derive it per item."""

    def __post_init__(self) -> None:
        where = f"request {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise GenerationRequestError(
                f"id: got {self.id!r}; a request id must be a non-empty string, "
                "e.g. the item id of the stage's manifest"
            )
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise GenerationRequestError(
                f"{where} n: got {self.n!r}; at least one sample is needed (GRPO groups need "
                "n >= 2); set n to the group size"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise GenerationRequestError(
                f"{where} seed: got {self.seed!r}; an integer is needed, derived from "
                "(run seed, iteration, stage, item)"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise GenerationRequestError(
                f"{where} seed: got {self.seed}; it must lie in [0, 2**63 - 1]; reduce it "
                "modulo 2**63"
            )
        self._check_images(where)

    def _check_images(self, where: str) -> None:
        if not isinstance(self.images, tuple) or not all(
            isinstance(path, Path) for path in self.images
        ):
            raise GenerationRequestError(
                f"{where} images: got {self.images!r}; pass a tuple of pathlib.Path objects "
                "naming local PNG files"
            )
        placeholders = image_count(self.messages)
        if placeholders != len(self.images):
            raise GenerationRequestError(
                f"{where} images: got {len(self.images)} file(s) for {placeholders} image "
                "placeholder(s) in the messages; image tokens and features would not match "
                "(rl-anchors §2.6 item 6); pass exactly one file per placeholder"
            )


@dataclass(frozen=True)
class Sample:
    """One sampled response: its text and the exact token ids and log-probs behind it.

    `token_ids` end with the stop token when `finish_reason` is `stop` (the trainer needs its
    log-prob too); `text` is their decoding with special tokens stripped. `logprobs[i]` is
    log softmax(logits / T)[token_ids[i]] over the full vocabulary, before top-k/top-p
    truncation: the quantity the trainer recomputes (at T = 1 for greedy requests).
    """

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ResultMismatchError(
                f"sample has {len(self.token_ids)} token ids but {len(self.logprobs)} log-probs; "
                "a backend must return one log-prob per sampled token"
            )


@dataclass(frozen=True)
class GenerationResult:
    """The samples of one request, or the reason it has none."""

    request_id: str
    samples: tuple[Sample, ...]
    prompt_tokens: int
    """Prompt length in tokens, image tokens included (0 when the images could not be read)."""
    model_digest: str
    """Digest of the checkpoint that generated the samples (user-asks §6.3)."""
    failure: FailureReason | None = None
    detail: str = ""
    """One sentence naming the request, the fault and the remedy; empty on success."""
    seconds: float = 0.0
    """Wall-clock seconds of the model calls its samples were drawn in (shared with the other
    requests of a batch when requests are batched together)."""

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def completion_tokens(self) -> int:
        return sum(len(sample.token_ids) for sample in self.samples)


@dataclass(frozen=True)
class Progress:
    """Running totals of one `generate` call, reported after every model call."""

    samples_done: int
    """Samples generated, plus the samples of requests that failed before generation."""
    samples_total: int
    completion_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], None]


class Generator(Protocol):
    """What a stage samples through: the transformers backend now, an HTTP backend later."""

    @property
    def model_digest(self) -> str:
        """Digest of the checkpoint this generator serves."""
        ...

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[GenerationResult]:
        """One result per request, in request order; bad items fail alone, never raise."""
        ...


def check_unique_ids(requests: Sequence[GenerationRequest]) -> None:
    """Raise `DuplicateRequestIdError` naming the first id used twice."""
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise DuplicateRequestIdError(
                f"request id {request.id!r} appears more than once in one generate call; "
                "results are joined by id, so give every request a distinct id"
            )
        seen.add(request.id)


def join_results(
    requests: Sequence[GenerationRequest],
    results: Sequence[GenerationResult],
    *,
    model_digest: str | None = None,
) -> list[GenerationResult]:
    """Results in request order, checked: one per request id, `n` samples each, right digest.

    Raises `ResultMismatchError` on an unknown, missing or repeated id, a successful result
    with a sample count other than its request's `n`, or (when `model_digest` is given) a
    result from another checkpoint.
    """
    check_unique_ids(requests)
    by_id: dict[str, GenerationResult] = {}
    for result in results:
        if result.request_id in by_id:
            raise ResultMismatchError(f"request {result.request_id!r} has two results")
        by_id[result.request_id] = result
    wanted = {request.id for request in requests}
    if unknown := sorted(set(by_id) - wanted):
        raise ResultMismatchError(f"results for unknown request ids {unknown[:5]}")
    if missing := [request.id for request in requests if request.id not in by_id]:
        raise ResultMismatchError(f"no result for request ids {missing[:5]}")
    joined = [by_id[request.id] for request in requests]
    for request, result in zip(requests, joined, strict=True):
        _check_result(request, result, model_digest)
    return joined


def _check_result(
    request: GenerationRequest, result: GenerationResult, model_digest: str | None
) -> None:
    if result.ok and len(result.samples) != request.n:
        raise ResultMismatchError(
            f"request {request.id!r} asked for {request.n} samples and got "
            f"{len(result.samples)}; the backend dropped or duplicated samples"
        )
    if not result.ok and result.samples:
        raise ResultMismatchError(
            f"request {request.id!r} failed ({result.failure}) but carries samples"
        )
    if model_digest is not None and result.model_digest != model_digest:
        raise ResultMismatchError(
            f"request {request.id!r} was generated by checkpoint {result.model_digest!r}, "
            f"expected {model_digest!r}; the backend serves stale or wrong weights "
            "(user-asks §6.3)"
        )
