"""The render service's client and wire format: `render_many` over HTTP, same results.

A stage on a cluster sends its SVGs to the hardened render Deployment (no GPU, no token, no
egress) instead of rendering in its own pod: `POST /v1/render` with `{"items": [{"id", "svg"}]}`
answers `{"results": [{"id", "reason", "detail", "png" (base64 or null), "width", "height",
"seconds"}]}` in item order. The client checks ids and order before a result is used, and
retries a busy (503) or unreachable service with backoff for `retry_seconds`.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any, get_args

from mmzero_runtime.httpclient import ServiceUnavailable, post_json
from mmzero_runtime.render.errors import Reason, RenderError
from mmzero_runtime.render.sandbox import RenderResult

REASONS = frozenset(get_args(Reason))
MAX_BATCH = 256
"""Most items in one request (a data stage renders 4 per proposal, in batches)."""


def encode_result(result: RenderResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "reason": result.reason,
        "detail": result.detail,
        "png": base64.b64encode(result.png).decode() if result.png is not None else None,
        "width": result.width,
        "height": result.height,
        "seconds": result.seconds,
    }


def decode_results(body: Any, ids: Sequence[str], where: str) -> list[RenderResult]:
    """The results of a response, checked against the ids sent (same ids, same order)."""
    rows = body.get("results") if isinstance(body, dict) else None
    if not isinstance(rows, list) or [r.get("id") for r in rows] != list(ids):
        raise RenderError(f"{where}: the results do not answer the items sent, in order")
    results = []
    for row in rows:
        if row.get("reason") not in REASONS or (row["reason"] == "ok") != bool(row.get("png")):
            raise RenderError(f"{where}: item {row.get('id')}: malformed result")
        png = base64.b64decode(row["png"]) if row.get("png") else None
        results.append(RenderResult(row["id"], png, row["reason"], str(row.get("detail", "")),
                                    int(row.get("width", 0)), int(row.get("height", 0)),
                                    float(row.get("seconds", 0.0))))  # fmt: skip
    return results


def _text(svg: str | bytes) -> str:
    """SVG text for JSON; undecodable bytes become U+FFFD (the sandbox then reports them)."""
    return svg.decode("utf-8", "replace") if isinstance(svg, bytes) else svg


class RenderServiceError(RuntimeError):
    """The render service cannot be used: down past the retry window, or refusing requests."""


class HTTPRenderer:
    """`Renderer`'s `render_many` against the render service at `base_url`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_seconds: float = 600,
        retry_seconds: float = 300,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_seconds = timeout_seconds
        self.retry_seconds = retry_seconds

    def __repr__(self) -> str:
        return f"HTTPRenderer({self.base_url!r})"

    def __enter__(self) -> HTTPRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to stop: the service outlives the stage."""

    def render_many(self, items: Sequence[tuple[str, str | bytes]]) -> list[RenderResult]:
        results: list[RenderResult] = []
        for start in range(0, len(items), MAX_BATCH):
            batch = items[start : start + MAX_BATCH]
            body = {"items": [{"id": key, "svg": _text(svg)} for key, svg in batch]}
            answer = self._post(body)
            results.extend(decode_results(answer, [key for key, _ in batch], repr(self)))
        return results

    def _post(self, body: dict[str, Any]) -> Any:
        try:
            status, answer = post_json(
                f"{self.base_url}/v1/render",
                body,
                token=self.token,
                request_id=uuid.uuid4().hex,
                timeout_seconds=self.timeout_seconds,
                retry_seconds=self.retry_seconds,
                service="the render service (its pods and log)",
            )
        except ServiceUnavailable as error:
            raise RenderServiceError(f"{self}: {error}") from None
        if status != 200:
            said = (
                answer.get("error", {}).get("message", answer)
                if isinstance(answer, dict)
                else answer
            )
            raise RenderServiceError(f"{self}: HTTP {status}: {said}")
        return answer
