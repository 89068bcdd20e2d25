"""The HTTP generation backend: the same `Generator` over a served frozen role (`mmzero serve`,
or `vllm serve --served-model-name <digest>` in the GPU image).

Requests go out concurrently, each with its own `X-Request-Id`; every response is checked
before it becomes a result (its checkpoint digest, `n` samples indexed 0..n-1, a log-prob per
token) and results are joined back in request order by `join_results`. A server that does not
answer, or answers 503 (busy), is retried with backoff for `retry_seconds`, then the stage stops
with a message naming the server. An item the server refuses (an image it cannot read, a prompt
too long) fails alone, as with the in-process backend.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from mmzero_runtime.generation.base import (
    GenerationRequest,
    GenerationResult,
    Progress,
    ProgressCallback,
    check_unique_ids,
    join_results,
)
from mmzero_runtime.generation.errors import FailureReason, ImageReadError, ResultMismatchError
from mmzero_runtime.generation.images import load_image
from mmzero_runtime.generation.wire import decode_samples, encode_request
from mmzero_runtime.httpclient import ServiceUnavailable, post_json

log = logging.getLogger(__name__)

_ITEM_FAILURES: dict[str, FailureReason] = {
    "prompt_too_long": "prompt_too_long",
    "image_missing": "image_missing",
    "image_unreadable": "image_unreadable",
}


class GenerationServerError(RuntimeError):
    """The model server cannot be used: down past the retry window, or refusing our requests."""


class HTTPGenerator:
    """`Generator` over an OpenAI-compatible server holding the checkpoint `model_digest`."""

    def __init__(
        self,
        base_url: str,
        *,
        model_digest: str,
        token: str | None = None,
        concurrency: int = 8,
        timeout_seconds: float = 600,
        retry_seconds: float = 300,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._digest = model_digest
        self.token = token
        self.concurrency = concurrency
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds

    def __repr__(self) -> str:
        return f"HTTPGenerator({self.base_url!r})"  # never the token

    @property
    def model_digest(self) -> str:
        return self._digest

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> list[GenerationResult]:
        """One result per request, in order; sent `concurrency` at a time."""
        check_unique_ids(requests)
        start = time.perf_counter()
        total = sum(request.n for request in requests)
        done = tokens = 0
        results: list[GenerationResult] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._one, request): request for request in requests}
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                done += futures[future].n  # drawn, or lost with a failed request
                tokens += result.completion_tokens
                if on_progress is not None:
                    on_progress(Progress(done, total, tokens, time.perf_counter() - start))
        return join_results(requests, results, model_digest=self._digest)

    def _one(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        try:
            images = [self._png(request, path) for path in request.images]
        except ImageReadError as error:
            return self._failed(request, error.reason, error.detail)
        body = encode_request(
            request.messages,
            images,
            model=self._digest,
            n=request.n,
            temperature=request.sampling.temperature,
            top_p=request.sampling.top_p,
            top_k=request.sampling.top_k,
            max_tokens=request.sampling.max_tokens,
            seed=request.seed,
        )
        status, answer = self._post(request.id, body)
        if status == 400 and answer.get("error", {}).get("code") in _ITEM_FAILURES:
            refused = answer["error"]
            return self._failed(request, _ITEM_FAILURES[refused["code"]], str(refused["message"]))
        if status != 200:
            message = answer.get("error", {}).get("message", answer)
            raise GenerationServerError(
                f"{self}: request {request.id!r} refused with HTTP {status}: {message}"
            )
        if answer.get("model") != self._digest:
            raise ResultMismatchError(
                f"{self}: request {request.id!r} was answered by checkpoint "
                f"{answer.get('model')!r}, expected {self._digest!r}; the server holds other "
                "weights (restart it on the stage's checkpoint)"
            )
        try:
            samples = decode_samples(answer, request.n, f"{self}: request {request.id!r}")
        except (ValueError, KeyError, TypeError) as error:
            raise ResultMismatchError(str(error)) from error
        return GenerationResult(
            request_id=request.id,
            samples=tuple(samples),
            prompt_tokens=int((answer.get("usage") or {}).get("prompt_tokens", 0)),
            model_digest=self._digest,
            seconds=time.perf_counter() - started,
        )

    @staticmethod
    def _png(request: GenerationRequest, path: Any) -> bytes:
        load_image(path, request_id=request.id)  # missing or corrupt: this item fails alone
        return bytes(path.read_bytes())

    def _failed(
        self, request: GenerationRequest, reason: FailureReason, detail: str
    ) -> GenerationResult:
        return GenerationResult(request.id, (), 0, self._digest, failure=reason, detail=detail)

    def _post(self, request_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body); a busy or unreachable server is waited out, then stops."""
        try:
            return post_json(
                f"{self.base_url}/v1/chat/completions",
                body,
                token=self.token,
                request_id=f"{request_id}-{uuid.uuid4().hex[:8]}",
                timeout_seconds=self.timeout_seconds,
                retry_seconds=self.retry_seconds,
                service="the frozen-role server (its pod and log)",
            )
        except ServiceUnavailable as error:
            raise GenerationServerError(f"{self}: {error}") from None
