"""The render service (`mmzero serve --render`) as a process: the same results as the local
sandbox for good and hostile SVGs, refusals that name the problem, and a clear error when the
service is gone."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mmzero_runtime.render import HTTPRenderer, Renderer, open_renderer
from mmzero_runtime.render.remote import RenderServiceError
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.launch import RENDER_URL_ENV, render_service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HOSTILE = ROOT / "tests" / "data" / "hostile"
TOKEN = "render-token-1b2c"
GOOD = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">'
    '<rect x="10" y="10" width="40" height="60" fill="#1f77b4"/>'
    '<text x="60" y="40" font-size="12">A</text></svg>'
)


@pytest.fixture(scope="module")
def service(spawn_server: Any) -> str:
    return str(spawn_server("serve", "--render", env={"MMZERO_SERVE_TOKEN": TOKEN}))


def test_service_renders_exactly_as_the_local_sandbox(service: str) -> None:
    spec = RunSpec()
    items = [("good", GOOD)] + [
        (path.stem, path.read_text(errors="replace")) for path in sorted(HOSTILE.glob("*.svg"))
    ]
    with Renderer(spec.render, spec.image) as local:
        expected = local.render_many(items)
    got = HTTPRenderer(service, token=TOKEN).render_many(items)
    assert [r.id for r in got] == [key for key, _ in items]
    assert got[0].ok and got[0].png == expected[0].png
    for want, have in zip(expected, got, strict=True):
        assert (have.reason, have.png, have.width, have.height) == (
            want.reason, want.png, want.width, want.height,
        ), have.id  # fmt: skip
    assert {r.reason for r in got} >= {"ok", "parse_error", "blocked_resource", "too_large"}


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"items": []}, "items: a list of 1 to"),
        ({"items": [{"id": "a", "svg": GOOD}, {"id": "a", "svg": GOOD}]}, "unique"),
        ({"items": [{"id": "", "svg": GOOD}]}, "items[0]"),
        ({"items": [{"id": "a", "svg": 5}]}, "items[0]"),
    ],
    ids=["empty", "duplicate-ids", "empty-id", "svg-not-text"],
)
def test_bad_batches_get_400_naming_the_item(service: str, body: object, names: str) -> None:
    call = urllib.request.Request(
        f"{service}/v1/render", json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(call, timeout=30)
    assert error.value.code == 400
    assert names in json.loads(error.value.read())["error"]["message"]


def test_requests_without_the_token_are_refused(service: str) -> None:
    with pytest.raises(RenderServiceError, match="HTTP 401"):
        HTTPRenderer(service).render_many([("a", GOOD)])


def test_stages_use_the_service_when_its_url_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = RunSpec()
    monkeypatch.setenv(RENDER_URL_ENV, "http://render:8001")
    service = render_service()
    assert isinstance(open_renderer(spec.render, spec.image, str(tmp_path), service), HTTPRenderer)
    monkeypatch.delenv(RENDER_URL_ENV)
    with open_renderer(spec.render, spec.image, str(tmp_path), render_service()) as local:
        assert isinstance(local, Renderer)


def test_a_gone_service_stops_the_stage_naming_it() -> None:
    renderer = HTTPRenderer("http://127.0.0.1:9", retry_seconds=1)
    with pytest.raises(RenderServiceError, match=r"127\.0\.0\.1:9.*no answer for 1 s"):
        renderer.render_many([("a", GOOD)])


def test_a_render_pod_that_dies_is_waited_for() -> None:
    from mmzero_runtime.serving.render_server import RenderServer

    spec = RunSpec()
    with Renderer(spec.render, spec.image) as renderer:
        first = RenderServer(renderer, port=0)
        first.start()
        port = first.httpd.server_address[1]
        client = HTTPRenderer(first.url, retry_seconds=60)
        first.stop()  # OOM-killed; the Deployment replaces it behind the same Service
        replacement: list[RenderServer] = []

        def restart() -> None:
            replacement.append(RenderServer(renderer, port=port))
            replacement[0].start()

        threading.Timer(2.0, restart).start()
        try:
            (result,) = client.render_many([("after-restart", GOOD)])
        finally:
            time.sleep(0.1)
            for server in replacement:
                server.stop()
    assert result.ok and result.id == "after-restart"
