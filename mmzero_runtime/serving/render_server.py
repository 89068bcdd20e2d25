"""`mmzero serve --render`: the SVG sandbox behind HTTP, for the hardened render pods.

The worker pool's limits (time, memory, no writes, no fetches) stay as in-process; on top the
pod has no GPU, no service-account token, a read-only root and no egress. Batches are rendered
one at a time through the pool (its workers render in parallel); at most `queue_size` batches
wait, then requests get 503.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from mmzero_runtime.render import Renderer
from mmzero_runtime.render.remote import MAX_BATCH, encode_result
from mmzero_runtime.serving.httpserver import JsonHandler, JsonService, RequestError

log = logging.getLogger(__name__)


class RenderServer(JsonService):
    """HTTP front of one `Renderer`; `start()` serves in a background thread."""

    def __init__(
        self,
        renderer: Renderer,
        *,
        host: str = "127.0.0.1",
        port: int = 8001,
        token: str | None = None,
        queue_size: int = 8,
    ) -> None:
        self.renderer = renderer
        self.token = token
        self.slots = threading.BoundedSemaphore(queue_size + 1)
        self.pool_lock = threading.Lock()
        super().__init__(_handler(self), host, port)

    def start(self, *workers: Callable[[], None]) -> None:
        super().start(*workers)
        log.info("render service url=%s", self.url)

    def render(self, body: Any) -> dict[str, Any]:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"items: a list of 1 to {MAX_BATCH} {{id, svg}} objects is needed",
                               "invalid_request")  # fmt: skip
        pairs = []
        for index, item in enumerate(items):
            ok = isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]
            if not ok or not isinstance(item.get("svg"), str):
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"items[{index}]: needs a non-empty string id and a string svg",
                                   "invalid_request")  # fmt: skip
            pairs.append((item["id"], item["svg"]))
        if len({key for key, _ in pairs}) != len(pairs):
            raise RequestError(
                HTTPStatus.BAD_REQUEST, "items: ids must be unique", "invalid_request"
            )
        if not self.slots.acquire(blocking=False):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "render service busy; retry",
                               "overloaded")  # fmt: skip
        try:
            with self.pool_lock:
                results = self.renderer.render_many(pairs)
        finally:
            self.slots.release()
        log.info("rendered batch items=%d ok=%d", len(results), sum(r.ok for r in results))
        return {"results": [encode_result(result) for result in results]}


def _handler(server: RenderServer) -> type[JsonHandler]:
    class Handler(JsonHandler):
        token = server.token

        def do_GET(self) -> None:
            if self.path == "/health":
                self.send_json(HTTPStatus.OK, {"status": "ready"})
            else:
                self.not_found()

        def do_POST(self) -> None:
            if self.path != "/v1/render":
                self.not_found()
                return
            try:
                answer = server.render(self.read_json())
            except RequestError as error:
                self.send_problem(error)
                return
            self.send_json(HTTPStatus.OK, answer)

    return Handler
