"""`mmzero serve` and the HTTP backend on the tiny Qwen2-VL: the served role answers exactly as
the in-process one, bad requests get a 4xx naming the field, overload a 503, a dead server a
clear error, and a bad item fails alone."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mmzero_runtime.generation import GenerationRequest, GenerationResult
from mmzero_runtime.generation.hf import HFGenerator
from mmzero_runtime.generation.http import GenerationServerError, HTTPGenerator
from mmzero_runtime.generation.wire import BadRequest, decode_request
from mmzero_runtime.models.loading import load_vlm
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.serving.server import ModelServer
from mmzero_runtime.spec import SamplingSpec

pytestmark = pytest.mark.integration

DIGEST = "sha256:served-tiny"
TOKEN = "test-token-value"
HOT = SamplingSpec(temperature=1.0, top_k=40, max_tokens=8)


@pytest.fixture(scope="module")
def local(tiny_vlm_dir: Path) -> Iterator[HFGenerator]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    vlm = load_vlm(tiny_vlm_dir, image_spec=TINY_IMAGE)
    yield HFGenerator(vlm.model, vlm.processor, image_spec=TINY_IMAGE, max_prompt_tokens=512,
                      batch_size=4, model_digest=DIGEST)  # fmt: skip
    torch.set_num_threads(threads)


class Gate:
    """The real generator behind a gate the test opens: holds the worker to fill the queue."""

    def __init__(self, inner: HFGenerator) -> None:
        self.inner, self.open, self.entered = inner, threading.Event(), threading.Event()

    @property
    def model_digest(self) -> str:
        return self.inner.model_digest

    def generate(self, requests: Sequence[GenerationRequest], **kw: Any) -> list[GenerationResult]:
        self.entered.set()
        self.open.wait(timeout=60)
        return self.inner.generate(requests, **kw)


@pytest.fixture(scope="module")
def server(local: HFGenerator) -> Iterator[ModelServer]:
    running = ModelServer(local, port=0, token=TOKEN, max_tokens=64)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "chart.png"
    image = Image.new("RGB", (160, 120), "white")
    image.paste((31, 119, 180), (20, 40, 60, 110))
    image.save(path)
    return path


def _requests(chart: Path) -> list[GenerationRequest]:
    question = build_solver_messages("How many bars are there?")
    return [
        GenerationRequest("p-1", build_proposer_messages("maps"), (), 3, HOT, 11),
        GenerationRequest("s-1", question, (chart,), 2, HOT, 12),
        GenerationRequest(
            "s-2", question, (chart,), 2, SamplingSpec(temperature=0.0, max_tokens=6), 13
        ),
    ]


def _post(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_served_role_answers_exactly_as_the_in_process_one(
    server: ModelServer, local: HFGenerator, chart: Path
) -> None:
    requests = _requests(chart)
    expected = local.generate(requests)
    client = HTTPGenerator(server.url, model_digest=DIGEST, token=TOKEN, concurrency=3)
    got = client.generate(requests)
    assert [r.request_id for r in got] == ["p-1", "s-1", "s-2"]
    for want, have in zip(expected, got, strict=True):
        assert have.ok and have.model_digest == DIGEST
        assert [s.token_ids for s in have.samples] == [s.token_ids for s in want.samples]
        assert [s.text for s in have.samples] == [s.text for s in want.samples]
        assert [s.logprobs for s in have.samples] == [s.logprobs for s in want.samples]
        assert [s.finish_reason for s in have.samples] == [s.finish_reason for s in want.samples]
        assert have.prompt_tokens == want.prompt_tokens
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ready", "model": DIGEST}


def test_a_bad_image_fails_its_item_alone(server: ModelServer, chart: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(chart.read_bytes()[:60])
    question = build_solver_messages("How many bars are there?")
    requests = [
        GenerationRequest("good", question, (chart,), 2, HOT, 1),
        GenerationRequest("bad", question, (broken,), 2, HOT, 2),
    ]
    results = HTTPGenerator(server.url, model_digest=DIGEST, token=TOKEN).generate(requests)
    assert results[0].ok and len(results[0].samples) == 2
    assert (results[1].failure, results[1].samples) == ("image_unreadable", ())
    assert "broken.png" in results[1].detail


@pytest.mark.parametrize(
    ("change", "status", "names"),
    [
        ({"n": 0}, 400, "n: got 0"),
        ({"max_tokens": 10_000}, 400, "max_tokens"),
        ({"temperature": "hot"}, 400, "temperature"),
        ({"messages": []}, 400, "messages"),
        ({"model": "sha256:other"}, 404, "not served here"),
        ({"image": "file:///etc/passwd"}, 400, "never file paths"),
        ({"image": "data:image/png;base64,@@@"}, 400, "not valid base64"),
    ],
    ids=["n", "max-tokens", "temperature", "messages", "model", "file-url", "base64"],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    server: ModelServer, change: dict[str, Any], status: int, names: str
) -> None:
    body: dict[str, Any] = {
        "model": DIGEST, "n": 1, "max_tokens": 4, "seed": 1,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }  # fmt: skip
    image = change.pop("image", None)
    if image is not None:
        part = {"type": "image_url", "image_url": {"url": image}}
        body["messages"][0]["content"].append(part)
    body.update(change)
    code, answer = _post(server.url, body)
    assert code == status and names in answer["error"]["message"]


def test_requests_without_the_token_are_refused(server: ModelServer) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert _post(server.url, body, token=None)[0] == 401
    assert _post(server.url, body, token="not-the-token-7f3a")[0] == 401
    client = HTTPGenerator(
        server.url, model_digest=DIGEST, token="not-the-token-7f3a", retry_seconds=1
    )
    request = GenerationRequest("x", build_proposer_messages("maps"), (), 1, HOT, 1)
    with pytest.raises(GenerationServerError, match="HTTP 401") as error:
        client.generate([request])
    assert "7f3a" not in str(error.value) + repr(client)


def test_a_full_queue_answers_503_and_the_client_waits_it_out(local: HFGenerator) -> None:
    gate = Gate(local)
    busy = ModelServer(gate, port=0, max_tokens=64, queue_size=1, batch_requests=1)  # type: ignore[arg-type]
    busy.start()
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 1}
        first = threading.Thread(target=_post, args=(busy.url, body, None))
        first.start()
        assert gate.entered.wait(30)  # taken by the worker, held at the gate
        second = threading.Thread(target=_post, args=(busy.url, body, None))
        second.start()
        deadline = time.monotonic() + 30
        while busy.pending.qsize() == 0:  # until it waits in the queue
            assert time.monotonic() < deadline
            time.sleep(0.01)
        code, answer = _post(busy.url, body, None)
        assert code == 503 and answer["error"]["code"] == "overloaded"

        client = HTTPGenerator(busy.url, model_digest=DIGEST, retry_seconds=60)
        request = GenerationRequest("later", build_proposer_messages("maps"), (), 1, HOT, 3)
        threading.Timer(1.0, gate.open.set).start()  # capacity returns while the client retries
        assert client.generate([request])[0].ok
        first.join(60)
        second.join(60)
    finally:
        gate.open.set()
        busy.stop()


def test_a_dead_server_stops_the_stage_naming_it_after_the_retry_window() -> None:
    client = HTTPGenerator("http://127.0.0.1:9", model_digest=DIGEST, retry_seconds=1)
    request = GenerationRequest("x", build_proposer_messages("maps"), (), 1, HOT, 1)
    with pytest.raises(GenerationServerError, match=r"127\.0\.0\.1:9.*no answer for 1 s"):
        client.generate([request])


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["messages", "role", "content", "type", "text", "image_url", "url",
                             "n", "seed", "temperature", "max_tokens", "top_p", "top_k"]),
            inner, max_size=5),
        max_leaves=20,
    )
)  # fmt: skip
def test_any_json_body_is_parsed_or_refused_with_bad_request(body: Any) -> None:
    try:
        request = decode_request(body, max_tokens_limit=64)
    except BadRequest as error:
        assert str(error)
    else:
        assert request.messages and 1 <= request.n <= 64 and 1 <= request.max_tokens <= 64


def test_a_server_that_dies_mid_stage_is_waited_for_and_nothing_is_lost(
    local: HFGenerator, chart: Path
) -> None:
    first = ModelServer(local, port=0, max_tokens=64)
    first.start()
    port = first.httpd.server_address[1]
    client = HTTPGenerator(first.url, model_digest=DIGEST, retry_seconds=60)
    requests = _requests(chart)
    before = client.generate(requests[:1])
    first.stop()  # the pod dies; its Deployment starts another on the same address
    replacement: list[ModelServer] = []

    def restart() -> None:
        replacement.append(ModelServer(local, port=port, max_tokens=64))
        replacement[0].start()

    threading.Timer(2.0, restart).start()
    try:
        after = client.generate(requests)
    finally:
        time.sleep(0.1)
        for server in replacement:
            server.stop()
    assert all(result.ok for result in after)
    assert after[0].samples == before[0].samples  # the same seeds, the same answers
