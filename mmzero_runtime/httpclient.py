"""POSTing JSON to one of our services (a frozen-role server, the render service) and waiting
out a busy or restarting one: connection failures and 502/503/504 are retried with backoff
(0.5 s doubling to 10 s) for `retry_seconds`; any other answer is returned as it came."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({502, 503, 504})


class ServiceUnavailable(RuntimeError):
    """The service did not answer (or stayed busy) for the whole retry window."""


def post_json(
    url: str,
    body: dict[str, Any],
    *,
    token: str | None,
    request_id: str,
    timeout_seconds: float,
    retry_seconds: float,
    service: str,
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body or {"error": {"message": ...}} when it is not JSON).
    `service` names what to check in the error: "the render service (its pods and log)"."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    deadline = time.monotonic() + retry_seconds
    delay = 0.5
    while True:
        call = urllib.request.Request(url, data, headers)
        try:
            with urllib.request.urlopen(call, timeout=timeout_seconds) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code not in RETRIED_STATUSES:
                raw = error.read()
                try:
                    return error.code, json.loads(raw)
                except ValueError:
                    said = raw[:300].decode("utf-8", "replace") or str(error.reason)
                    return error.code, {"error": {"message": said}}
            problem = f"HTTP {error.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            problem = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        if time.monotonic() + delay > deadline:
            raise ServiceUnavailable(
                f"{url}: no answer for {retry_seconds:.0f} s (last: {problem}); check {service}, "
                "then rerun the stage: finished stages are kept"
            )
        log.warning("%s busy or down, retrying in %.1f s: %s", url, delay, problem)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)
