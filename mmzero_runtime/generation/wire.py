"""The wire format shared by `mmzero serve` and the HTTP generation backend: OpenAI's
`/v1/chat/completions` as vLLM speaks it, so the same client talks to either server.

One generation request is one chat completion: images travel as base64 `data:` URLs in
`image_url` parts (never file paths or remote URLs), `n`, `temperature`, `top_p`, `top_k`,
`max_tokens` and `seed` as usual, and log-probs with `return_tokens_as_token_ids` (vLLM's option)
so each sampled token comes back as `token_id:<id>` with its log-prob. The response's `model`
field carries the served checkpoint's digest (vLLM: `--served-model-name <digest>`), which the
client checks before any sample touches a reward.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmzero_runtime.generation.base import MAX_SEED, GenerationResult, Sample
from mmzero_runtime.roles import ChatMessage

MAX_SAMPLES = 64
"""Most samples one request may ask for (a GRPO group is 4-10)."""
MAX_IMAGE_BYTES = 16 << 20
"""Largest decoded image of a request; renders are a few hundred kB."""
DATA_URL_PREFIX = "data:image/png;base64,"
TOKEN_PREFIX = "token_id:"


class BadRequest(ValueError):
    """A request the server refuses with 400; the message names the field and what is allowed."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat completion request, with its images decoded to PNG bytes."""

    messages: list[ChatMessage]
    images: list[bytes]
    n: int
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int


def encode_request(
    messages: Sequence[ChatMessage],
    images: Sequence[bytes],
    *,
    model: str,
    n: int,
    temperature: float,
    top_p: float,
    top_k: int,
    max_tokens: int,
    seed: int,
) -> dict[str, Any]:
    """The JSON body of one request; image placeholders become data URLs, in order."""
    pending = iter(images)
    wire_messages = []
    for message in messages:
        parts = []
        for part in message["content"]:
            if part["type"] == "image":
                data = base64.b64encode(next(pending)).decode()
                parts.append({"type": "image_url", "image_url": {"url": DATA_URL_PREFIX + data}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        wire_messages.append({"role": message["role"], "content": parts})
    return {
        "model": model,
        "messages": wire_messages,
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k if top_k > 0 else -1,
        "max_tokens": max_tokens,
        "seed": seed,
        "logprobs": True,
        "return_tokens_as_token_ids": True,
        "skip_special_tokens": True,
    }


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"{name}: got {value!r}; a number in [{low}, {high}] is needed")
    return float(value)


def _integer(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name}: got {value!r}; an integer in [{low}, {high}] is needed")
    return value


def _image(part: dict[str, Any], where: str) -> bytes:
    url = (part.get("image_url") or {}).get("url") if isinstance(part, dict) else None
    if not isinstance(url, str) or not url.startswith("data:image/"):
        shown = url[:40] if isinstance(url, str) else url
        raise BadRequest(
            f"{where}: image_url {shown!r} is not a base64 data URL; this server takes only "
            "inline images (data:image/png;base64,...), never file paths or remote URLs"
        )
    head, _, payload = url.partition(",")
    if not head.endswith(";base64"):
        raise BadRequest(f"{where}: image data URL is not base64-encoded")
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise BadRequest(f"{where}: image is over {MAX_IMAGE_BYTES >> 20} MiB")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: image data URL is not valid base64") from None


def decode_request(body: Any, max_tokens_limit: int) -> ChatRequest:
    """Validate a request body; `BadRequest` names the first field that is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object (an OpenAI chat completion request)")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages: a non-empty list of chat messages is needed")
    messages: list[ChatMessage] = []
    images: list[bytes] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
        ):
            raise BadRequest(f"{where}: needs a role of system, user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise BadRequest(f"{where}.content: a string or a list of parts is needed")
        parts: list[dict[str, Any]] = []
        for number, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                images.append(_image(part, f"{where}.content[{number}]"))
                parts.append({"type": "image"})
            else:
                raise BadRequest(f"{where}.content[{number}]: a text or image_url part is needed")
        messages.append({"role": message["role"], "content": parts})  # type: ignore[typeddict-item]
    top_k = _integer(body, "top_k", -1, -1, 1 << 20)
    return ChatRequest(
        messages=messages,
        images=images,
        n=_integer(body, "n", 1, 1, MAX_SAMPLES),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        top_k=max(top_k, 0),
        max_tokens=_integer(body, "max_tokens", max_tokens_limit, 1, max_tokens_limit),
        seed=_integer(body, "seed", 0, 0, MAX_SEED),
    )


def encode_response(result: GenerationResult, request_id: str, created: int) -> dict[str, Any]:
    """A chat completion response for one successful result."""
    choices = []
    for index, sample in enumerate(result.samples):
        tokens = [
            {"token": f"{TOKEN_PREFIX}{token}", "logprob": logprob}
            for token, logprob in zip(sample.token_ids, sample.logprobs, strict=True)
        ]
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": sample.text},
                "finish_reason": sample.finish_reason,
                "logprobs": {"content": tokens},
            }
        )
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": result.model_digest,
        "choices": choices,
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
    }


def decode_samples(body: dict[str, Any], n: int, where: str) -> list[Sample]:
    """The samples of a response, checked: `n` choices, indexed 0..n-1, one log-prob per token."""
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != n:
        got = len(choices) if isinstance(choices, list) else choices
        raise ValueError(f"{where}: asked for {n} samples, the server returned {got}")
    samples: list[Sample] = []
    for expected, choice in enumerate(sorted(choices, key=lambda c: c.get("index", -1))):
        if choice.get("index") != expected:
            raise ValueError(f"{where}: choice indices are not 0..{n - 1}")
        entries = (choice.get("logprobs") or {}).get("content") or []
        token_ids, logprobs = [], []
        for entry in entries:
            token = str(entry.get("token", ""))
            if not token.startswith(TOKEN_PREFIX):
                raise ValueError(
                    f"{where}: token {token[:20]!r} is not a token id; the server must honour "
                    "return_tokens_as_token_ids (vLLM >= 0.6 or mmzero serve)"
                )
            token_ids.append(int(token.removeprefix(TOKEN_PREFIX)))
            logprobs.append(float(entry["logprob"]))
        finish = choice.get("finish_reason")
        samples.append(
            Sample(
                text=str((choice.get("message") or {}).get("content") or ""),
                token_ids=tuple(token_ids),
                logprobs=tuple(logprobs),
                finish_reason="length" if finish == "length" else "stop",
            )
        )
    return samples
