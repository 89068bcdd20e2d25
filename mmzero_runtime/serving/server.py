"""`mmzero serve`: one frozen role behind an OpenAI-compatible `/v1/chat/completions`.

Requests wait in a bounded queue (a full queue answers 503 at once, so a client backs off
instead of piling up); one worker thread takes what is queued, up to `batch_requests` at a
time, and generates it in one `generate` call of the in-process backend. Each response carries
the request id and the checkpoint digest. A bad request gets a 400 naming its field, a request
for another checkpoint a 404, a missing or wrong bearer token a 401; the server keeps serving
the others. Standard library HTTP only: the GPU image serves the same role with `vllm serve`.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from mmzero_runtime.generation.base import GenerationRequest, GenerationResult, Generator
from mmzero_runtime.generation.wire import (
    BadRequest,
    ChatRequest,
    decode_request,
    encode_response,
)
from mmzero_runtime.serving.httpserver import JsonHandler, JsonService, RequestError
from mmzero_runtime.spec import ImageSpec, SamplingSpec

log = logging.getLogger(__name__)


def model_server(
    path: Path,
    digest: str,
    image_spec: ImageSpec,
    *,
    device: str,
    max_prompt_tokens: int,
    batch_size: int,
    host: str,
    port: int,
    token: str | None,
    max_tokens: int,
    queue_size: int,
) -> ModelServer:
    """Load the model at `path` in-process and put it behind a (not yet started) server that
    answers as `digest`."""
    from mmzero_runtime.generation.hf import HFGenerator
    from mmzero_runtime.models.loading import load_vlm

    loaded = load_vlm(path, image_spec=image_spec, device=device)
    generator = HFGenerator(
        loaded.model,
        loaded.processor,
        image_spec=image_spec,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=batch_size,
        model_digest=digest,
    )
    return ModelServer(
        generator,
        host=host,
        port=port,
        token=token,
        max_tokens=max_tokens,
        queue_size=queue_size,
    )


@dataclass
class _Job:
    request_id: str
    chat: ChatRequest
    done: Future[GenerationResult] = field(default_factory=Future)


class ModelServer(JsonService):
    """The HTTP server of one frozen role; `start()` serves in background threads."""

    def __init__(
        self,
        generator: Generator,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        token: str | None = None,
        max_tokens: int = 4096,
        queue_size: int = 64,
        batch_requests: int = 16,
        batch_wait_seconds: float = 0.01,
    ) -> None:
        self.generator = generator
        self.token = token
        self.max_tokens = max_tokens
        self.batch_requests = batch_requests
        self.batch_wait_seconds = batch_wait_seconds
        self.pending: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        super().__init__(_handler(self), host, port)

    def start(self, *workers: Callable[[], None]) -> None:
        super().start(self._work, *workers)
        log.info("serving model=%s url=%s", self.generator.model_digest, self.url)

    def stopped(self) -> None:
        self.pending.put(None)  # the batching loop ends after what is queued

    def submit(self, job: _Job) -> None:
        """Queue a job; `queue.Full` when the server is at capacity."""
        self.pending.put_nowait(job)

    def _work(self) -> None:
        while True:
            first = self.pending.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_seconds
            while len(batch) < self.batch_requests:
                try:
                    job = self.pending.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self.pending.put(None)  # stop after this batch
                    break
                batch.append(job)
            self._generate(batch)

    def _generate(self, batch: list[_Job]) -> None:
        with tempfile.TemporaryDirectory(prefix="mmzero-serve-") as scratch:
            requests = [self._request(job, Path(scratch)) for job in batch]
            try:
                results = self.generator.generate(requests)
            except Exception as error:  # a backend bug fails this batch, not the server
                log.exception("generation failed for %d request(s)", len(batch))
                for job in batch:
                    job.done.set_exception(error)
                return
        for job, result in zip(batch, results, strict=True):
            job.done.set_result(result)

    @staticmethod
    def _request(job: _Job, scratch: Path) -> GenerationRequest:
        paths = []
        for index, data in enumerate(job.chat.images):
            path = scratch / f"{job.request_id}-{index}.png"
            path.write_bytes(data)
            paths.append(path)
        chat = job.chat
        return GenerationRequest(
            id=job.request_id,
            messages=chat.messages,
            images=tuple(paths),
            n=chat.n,
            sampling=SamplingSpec(
                temperature=chat.temperature,
                top_p=chat.top_p,
                top_k=chat.top_k,
                max_tokens=chat.max_tokens,
            ),
            seed=chat.seed,
        )


def _handler(server: ModelServer) -> type[JsonHandler]:
    class Handler(JsonHandler):
        token = server.token

        def do_GET(self) -> None:
            digest = server.generator.model_digest
            if self.path == "/health":
                self.send_json(HTTPStatus.OK, {"status": "ready", "model": digest})
            elif self.path == "/v1/models":
                models = [{"id": digest, "object": "model"}]
                self.send_json(HTTPStatus.OK, {"object": "list", "data": models})
            else:
                self.not_found()

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self.not_found()
                return
            try:
                result = self._complete()
            except RequestError as error:
                self.send_problem(error)
                return
            self.send_json(
                HTTPStatus.OK, encode_response(result, self.request_id, int(time.time()))
            )

        def _complete(self) -> GenerationResult:
            body = self.read_json()
            try:
                chat = decode_request(body, server.max_tokens)
            except BadRequest as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(error), error.code) from None
            digest = server.generator.model_digest
            if body.get("model") not in (None, digest):
                message = f"model {body['model']!r} is not served here; this one is {digest!r}"
                raise RequestError(HTTPStatus.NOT_FOUND, message, "model_not_found")
            job = _Job(self.request_id, chat)
            try:
                server.submit(job)
            except queue.Full:
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "server overloaded: "
                                   f"{server.pending.maxsize} requests queued; retry",
                                   "overloaded") from None  # fmt: skip
            try:
                result = job.done.result()
            except Exception as error:
                message = f"generation failed: {error}"
                raise RequestError(HTTPStatus.INTERNAL_SERVER_ERROR, message, "internal") from error
            if not result.ok:
                raise RequestError(HTTPStatus.BAD_REQUEST, result.detail, str(result.failure))
            return result

    return Handler
