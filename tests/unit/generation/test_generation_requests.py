"""Request validation, image reading and the join of results to requests (no model needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from mmzero_runtime.generation import (
    DuplicateRequestIdError,
    GenerationRequest,
    GenerationRequestError,
    GenerationResult,
    ImageReadError,
    ResultMismatchError,
    Sample,
    join_results,
    load_image,
    sample_seeds,
)
from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.spec import SamplingSpec

SAMPLING = SamplingSpec(temperature=1.0, max_tokens=8)


def solver_request(tmp_path: Path, **changes: object) -> GenerationRequest:
    png = tmp_path / "chart.png"
    if not png.exists():
        Image.new("RGB", (32, 32), "white").save(png)
    fields: dict[str, object] = {
        "id": "item-0",
        "messages": build_solver_messages("How many bars?"),
        "images": (png,),
        "n": 2,
        "sampling": SAMPLING,
        "seed": 0,
    }
    fields.update(changes)
    return GenerationRequest(**fields)  # type: ignore[arg-type]


def test_request_well_formed_builds(tmp_path: Path) -> None:
    request = solver_request(tmp_path)
    assert request.n == 2 and len(request.images) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": ""}, "non-empty string"),  # an empty id could not be joined back
        ({"n": 0}, "at least one sample"),  # n < 1
        ({"n": True}, "at least one sample"),  # a bool is not a count
        ({"seed": -1}, "[0, 2**63 - 1]"),  # negative seed
        ({"seed": 2**63}, "[0, 2**63 - 1]"),  # past signed 64 bits
        ({"seed": 1.5}, "an integer"),  # a float seed
        ({"images": ()}, "0 file(s) for 1 image placeholder"),  # placeholder without a file
        ({"images": ("chart.png",)}, "pathlib.Path"),  # a str path, not a Path
        ({"images": [Path("a.png")]}, "tuple"),  # a list is not hashable/immutable
    ],
    ids=["empty-id", "n-zero", "n-bool", "seed-negative", "seed-too-big", "seed-float",
         "missing-file-for-placeholder", "str-path", "list-of-paths"],
)  # fmt: skip
def test_request_malformed_raises_with_field_and_fix(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(GenerationRequestError, match="got") as error:
        solver_request(tmp_path, **changes)
    assert message in str(error.value)


def test_request_text_only_with_image_file_raises(tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    with pytest.raises(GenerationRequestError, match="1 file\\(s\\) for 0 image placeholder"):
        GenerationRequest("p", build_proposer_messages("maps"), (png,), 1, SAMPLING, 0)


def test_load_image_missing_file_fails_image_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError) as error:
        load_image(tmp_path / "absent.png", request_id="item-3")
    assert error.value.reason == "image_missing"
    assert "item-3" in error.value.detail and "absent.png" in error.value.detail


@pytest.mark.parametrize(
    "content",
    [
        b"not a png at all",  # garbage bytes
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x20",  # truncated PNG header
    ],
    ids=["garbage", "truncated"],
)
def test_load_image_corrupt_file_fails_image_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as error:
        load_image(path, request_id="item-4")
    assert error.value.reason == "image_unreadable" and "item-4" in error.value.detail


def test_load_image_valid_png_decodes(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (40, 30), "red").save(path)
    assert load_image(path, request_id="x").size == (40, 30)


def test_sample_seeds_distinct_and_prefix_stable() -> None:
    seeds = sample_seeds(123, 16)
    assert len(set(seeds)) == 16
    assert sample_seeds(123, 4) == seeds[:4]
    assert sample_seeds(124, 4) != seeds[:4]


def sample(text: str = "a") -> Sample:
    return Sample(text=text, token_ids=(5, 2), logprobs=(-0.5, -0.1), finish_reason="stop")


def result(request_id: str, samples: int = 2, **changes: object) -> GenerationResult:
    base = GenerationResult(request_id, tuple(sample() for _ in range(samples)), 10, "sha256:a")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_join_results_out_of_order_returns_request_order(tmp_path: Path) -> None:
    requests = [solver_request(tmp_path, id=f"r{i}") for i in range(3)]
    joined = join_results(requests, [result("r2"), result("r0"), result("r1")])
    assert [r.request_id for r in joined] == ["r0", "r1", "r2"]


def test_join_results_failed_request_without_samples_is_accepted(tmp_path: Path) -> None:
    requests = [solver_request(tmp_path, id="r0"), solver_request(tmp_path, id="r1")]
    failed = result("r1", samples=0, failure="prompt_too_long", detail="too long")
    assert not join_results(requests, [result("r0"), failed])[1].ok


@pytest.mark.parametrize(
    ("results", "message"),
    [
        (["r0"], "no result for request ids \\['r1'\\]"),  # one result missing
        (["r0", "r1", "r9"], "unknown request ids"),  # a result nobody asked for
        (["r0", "r0", "r1"], "two results"),  # the same id answered twice
    ],
    ids=["missing", "unknown", "repeated"],
)
def test_join_results_ids_not_matching_raise(
    tmp_path: Path, results: list[str], message: str
) -> None:
    requests = [solver_request(tmp_path, id="r0"), solver_request(tmp_path, id="r1")]
    with pytest.raises(ResultMismatchError, match=message):
        join_results(requests, [result(request_id) for request_id in results])


def test_join_results_wrong_sample_count_raises(tmp_path: Path) -> None:
    with pytest.raises(ResultMismatchError, match="asked for 2 samples and got 1"):
        join_results([solver_request(tmp_path)], [result("item-0", samples=1)])


def test_join_results_other_checkpoint_digest_raises(tmp_path: Path) -> None:
    with pytest.raises(ResultMismatchError, match="stale or wrong weights"):
        join_results([solver_request(tmp_path)], [result("item-0")], model_digest="sha256:b")


def test_join_results_duplicate_request_ids_raise(tmp_path: Path) -> None:
    requests = [solver_request(tmp_path), solver_request(tmp_path)]
    with pytest.raises(DuplicateRequestIdError, match="item-0"):
        join_results(requests, [result("item-0")])


def test_sample_logprob_count_differs_from_tokens_raises() -> None:
    with pytest.raises(ResultMismatchError, match="one log-prob per sampled token"):
        Sample(text="a", token_ids=(1, 2), logprobs=(-0.1,), finish_reason="length")
