"""What both servers share: JSON in and out, bearer-token auth, request ids, a body limit,
and serving from background threads.

Errors are OpenAI-shaped (`{"error": {"message", "type", "code"}}`) so clients read them the
same way from `mmzero serve`, the render service and vLLM.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request refused with `status`; `code` is the machine-readable reason."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class JsonHandler(BaseHTTPRequestHandler):
    """Base request handler; subclasses route in `do_GET` / `do_POST`."""

    protocol_version = "HTTP/1.1"
    token: str | None = None
    """Bearer token every POST must carry; None accepts any."""
    max_body_bytes = 64 << 20

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def request_id(self) -> str:
        if not hasattr(self, "_request_id"):
            self._request_id = self.headers.get("X-Request-Id") or uuid.uuid4().hex
        return self._request_id

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", self.request_id)
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)

    def send_problem(self, error: RequestError) -> None:
        phrase = HTTPStatus(error.status).phrase
        self.send_json(error.status, {"error": {"message": str(error), "type": phrase,
                                                "code": error.code}})  # fmt: skip

    def read_json(self) -> Any:
        """The authorised request's JSON body; `RequestError` (401, 413, 400) otherwise."""
        if self.token is not None:
            given = self.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
                raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token",
                                   "unauthorized")  # fmt: skip
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes is over {self.max_body_bytes}",
                               "too_large")  # fmt: skip
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {error}",
                               "invalid_json") from None  # fmt: skip

    def not_found(self) -> None:
        self.send_problem(RequestError(HTTPStatus.NOT_FOUND, f"no route {self.path}", "not_found"))


class JsonService:
    """A threaded HTTP server for one handler class, served in the background by `start()`."""

    def __init__(self, handler: type[JsonHandler], host: str, port: int) -> None:
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, *workers: Callable[[], None]) -> None:
        """Serve requests, and run `workers` (e.g. a batching loop), each in its own thread."""
        for target in (*workers, self.httpd.serve_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.stopped()
        for thread in self._threads:
            thread.join(timeout=30)

    def stopped(self) -> None:
        """Called once no request can arrive any more: let the workers end."""
