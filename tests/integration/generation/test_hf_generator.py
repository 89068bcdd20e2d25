"""HFGenerator on the tiny Qwen2-VL: counts, seeds, greedy, log-prob gap guard, bad items.

The tiny model is untrained, so replies are noise; what is checked is the machinery: every
request gets its n samples, seeds decide everything, and the reported log-probs equal a
teacher-forced forward pass (rl-anchors §2.6 item 4), which is what the trainer recomputes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mmzero_runtime.generation import GenerationRequest, GenerationResult, Progress, Sample
from mmzero_runtime.generation.hf import HFGenerator
from mmzero_runtime.models.inputs import encode
from mmzero_runtime.models.loading import LoadedVLM, load_vlm
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.spec import SamplingSpec

pytestmark = pytest.mark.integration

HOT = SamplingSpec(temperature=1.0, max_tokens=8)
NUCLEUS = SamplingSpec(temperature=0.7, top_p=0.9, top_k=40, max_tokens=8)
GREEDY = SamplingSpec(temperature=0.0, max_tokens=8)
DIGEST = "sha256:tiny-test"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model's matrices are too small to split: extra intra-op threads only spin, and
    on a shared 2-core machine they made these tests 5-10x slower (benchmarks/RESULTS.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir: Path) -> LoadedVLM:
    torch.manual_seed(0)
    return load_vlm(tiny_vlm_dir, image_spec=TINY_IMAGE)


@pytest.fixture(scope="module")
def generator(vlm: LoadedVLM) -> HFGenerator:
    return HFGenerator(
        vlm.model,
        vlm.processor,
        image_spec=TINY_IMAGE,
        max_prompt_tokens=512,
        batch_size=4,
        model_digest=DIGEST,
    )


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "chart.png"
    image = Image.new("RGB", (160, 120), "white")
    image.paste((31, 119, 180), (20, 40, 60, 110))
    image.paste((255, 127, 14), (90, 20, 130, 110))
    image.save(path)
    return path


def proposer(
    request_id: str, seed: int, n: int = 3, sampling: SamplingSpec = HOT
) -> GenerationRequest:
    return GenerationRequest(request_id, build_proposer_messages("maps"), (), n, sampling, seed)


def solver(
    request_id: str, image: Path, seed: int, n: int = 2, sampling: SamplingSpec = HOT
) -> GenerationRequest:
    messages = build_solver_messages("How many bars are there?")
    return GenerationRequest(request_id, messages, (image,), n, sampling, seed)


def teacher_forced_all(vlm: LoadedVLM, request: GenerationRequest, sample: Sample) -> torch.Tensor:
    """log softmax(logits / T) `(T, V)` at each reply position, one forward on prompt + reply."""
    images = [Image.open(path) for path in request.images]
    inputs = dict(encode(vlm.processor, request.messages, images, image_spec=TINY_IMAGE))
    reply = torch.tensor([sample.token_ids])
    prompt_length = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], reply], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["mm_token_type_ids"] = torch.cat(
        [inputs["mm_token_type_ids"], torch.zeros_like(reply)], dim=1
    )
    with torch.no_grad():
        logits = vlm.model(**inputs).logits[0, prompt_length - 1 : -1].float()  # (T, V)
    temperature = request.sampling.temperature or 1.0
    return torch.log_softmax(logits / temperature, dim=-1)


def teacher_forced(vlm: LoadedVLM, request: GenerationRequest, sample: Sample) -> torch.Tensor:
    """The trainer's log-probs of the sampled tokens (rl-anchors §2.6 item 4)."""
    logprobs = teacher_forced_all(vlm, request, sample)
    return logprobs.gather(-1, torch.tensor(sample.token_ids)[:, None]).squeeze(-1)


def assert_greedy(vlm: LoadedVLM, request: GenerationRequest, sample: Sample) -> None:
    """Every token is the argmax of the raw logits, and its log-prob (T = 1) matches."""
    logprobs = teacher_forced_all(vlm, request, sample)
    assert logprobs.argmax(dim=-1).tolist() == list(sample.token_ids)
    assert torch.allclose(
        teacher_forced(vlm, request, sample), torch.tensor(sample.logprobs), atol=1e-4
    )


def texts(result: GenerationResult) -> list[tuple[int, ...]]:
    return [sample.token_ids for sample in result.samples]


def test_generate_text_and_image_requests_return_n_samples_that_decode(
    generator: HFGenerator, vlm: LoadedVLM, chart: Path
) -> None:
    requests = [proposer("p0", seed=1, n=3), solver("s0", chart, seed=2, n=2)]
    results = generator.generate(requests)
    assert [r.request_id for r in results] == ["p0", "s0"]
    assert all(r.ok and r.model_digest == DIGEST and r.prompt_tokens > 0 for r in results)
    assert [len(r.samples) for r in results] == [3, 2]
    # The image prompt holds the expanded image tokens: one per merged 2x2 patch of the grid.
    feature = encode(vlm.processor, requests[1].messages, [chart], image_spec=TINY_IMAGE)
    image_tokens = int(feature["image_grid_thw"].prod()) // 4
    assert image_tokens > 1
    assert results[1].prompt_tokens == feature["input_ids"].shape[1] > image_tokens
    tokenizer = vlm.processor.tokenizer
    for sample in (sample for r in results for sample in r.samples):
        assert 1 <= len(sample.token_ids) <= HOT.max_tokens
        assert tokenizer.decode(list(sample.token_ids), skip_special_tokens=True) == sample.text
        assert all(logprob <= 0.0 for logprob in sample.logprobs)


def test_generate_same_request_and_seed_identical_in_any_company(
    generator: HFGenerator, chart: Path
) -> None:
    alone = generator.generate([solver("s", chart, seed=5)])
    crowded = generator.generate(
        [proposer("p", seed=9), solver("s", chart, seed=5), solver("t", chart, seed=6, n=3)]
    )
    assert alone[0].samples == crowded[1].samples


def test_generate_different_seeds_give_different_samples(generator: HFGenerator) -> None:
    first, second = generator.generate([proposer("a", seed=1), proposer("b", seed=2)])
    assert texts(first) != texts(second)


def test_generate_never_samples_vision_placeholder_tokens(
    vlm: LoadedVLM, generator: HFGenerator
) -> None:
    # The untrained model puts real mass on <|image_pad|>; a response holding it would be taken
    # for an image slot by the trainer's forward pass, so the sampler bans the vision ids.
    config = vlm.model.config
    vision = {config.image_token_id, config.video_token_id, config.vision_start_token_id,
              config.vision_end_token_id}  # fmt: skip
    hot = SamplingSpec(temperature=2.0, top_p=1.0, max_tokens=48)
    results = generator.generate([proposer(f"p{i}", seed=i, n=4, sampling=hot) for i in range(6)])
    sampled = {t for result in results for sample in result.samples for t in sample.token_ids}
    assert len(sampled) > 40  # a hot, untrained model wanders over much of the vocabulary
    assert not sampled & vision


def test_generate_samples_of_one_request_differ_at_temperature_one(
    generator: HFGenerator, chart: Path
) -> None:
    # Never a shared seed for a group (rl-anchors §2.6 item 9): the 4 replies are not all equal.
    (result,) = generator.generate([solver("s", chart, seed=3, n=4)])
    assert len(set(texts(result))) > 1


def test_generate_greedy_is_deterministic_and_takes_the_argmax(
    generator: HFGenerator, vlm: LoadedVLM, chart: Path
) -> None:
    requests = [proposer("p", seed=1, n=2, sampling=GREEDY), solver("s", chart, 7, 1, GREEDY)]
    first, second = generator.generate(requests), generator.generate(requests)
    assert [texts(r) for r in first] == [texts(r) for r in second]
    assert len(set(texts(first[0]))) == 1  # greedy ignores the seed
    for request, result in zip(requests, first, strict=True):
        assert_greedy(vlm, request, result.samples[0])


@pytest.mark.parametrize(
    "sampling",
    [
        HOT,  # plain temperature 1
        NUCLEUS,  # temperature 0.7 with top-p and top-k: log-probs stay the full-vocab ones
        GREEDY,  # temperature 0 reports log-probs at temperature 1
    ],
    ids=["t1", "t0.7-top-p-top-k", "greedy"],
)
def test_generate_logprobs_match_teacher_forced_recomputation(
    generator: HFGenerator, vlm: LoadedVLM, chart: Path, sampling: SamplingSpec
) -> None:
    requests = [proposer("p", 11, 2, sampling), solver("s", chart, 12, 2, sampling)]
    for request, result in zip(requests, generator.generate(requests), strict=True):
        for sample in result.samples:
            recomputed = teacher_forced(vlm, request, sample)
            gap = (recomputed - torch.tensor(sample.logprobs)).abs().max().item()
            assert gap < 1e-4, f"{request.id}: rollout vs trainer log-prob gap {gap}"


@pytest.fixture
def checkpoint_defaults(vlm: LoadedVLM) -> Iterator[Any]:
    """The checkpoint's generation_config asks for a penalty and suppresses a token, as Qwen's
    own configs do (repetition_penalty 1.05); generation must ignore both."""
    saved = vlm.model.generation_config
    config = saved.__class__.from_dict(saved.to_dict())
    config.repetition_penalty = 3.0
    config.no_repeat_ngram_size = 1
    vlm.model.generation_config = config
    yield config
    vlm.model.generation_config = saved


def test_generate_ignores_checkpoint_generation_defaults(
    generator: HFGenerator, vlm: LoadedVLM, checkpoint_defaults: Any
) -> None:
    request = proposer("p", seed=4, n=1, sampling=SamplingSpec(temperature=0.0, max_tokens=12))
    (result,) = generator.generate([request])
    # A penalty of 3 and no repeated token would change greedy picks; they must not apply.
    assert_greedy(vlm, request, result.samples[0])
    assert vlm.model.generation_config is checkpoint_defaults  # restored afterwards
    assert not vlm.model.training


def test_generate_corrupt_or_missing_image_fails_alone(
    generator: HFGenerator, chart: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(chart.read_bytes()[:100])  # a truncated PNG
    requests = [
        solver("good", chart, seed=1),
        solver("corrupt", corrupt, seed=2),
        solver("missing", tmp_path / "absent.png", seed=3),
        proposer("text", seed=4),
    ]
    results = generator.generate(requests)
    assert [r.failure for r in results] == [None, "image_unreadable", "image_missing", None]
    assert "corrupt" in results[1].detail and "corrupt.png" in results[1].detail
    assert results[1].samples == () and results[2].samples == ()
    assert [len(r.samples) for r in (results[0], results[3])] == [2, 3]
    # The good request's samples do not depend on its failed neighbours.
    assert results[0].samples == generator.generate([requests[0]])[0].samples


def test_generate_prompt_over_limit_fails_prompt_too_long(vlm: LoadedVLM, chart: Path) -> None:
    long_question = GenerationRequest(
        "image",
        build_solver_messages("How many bars are there? " * 12),
        (chart,),
        2,
        HOT,
        1,
    )
    inputs = encode(
        vlm.processor, long_question.messages, [Image.open(chart)], image_spec=TINY_IMAGE
    )
    length = inputs["input_ids"].shape[1]
    image_tokens = int(inputs["mm_token_type_ids"].sum())
    # The limit lies between the text alone and text + image tokens: image tokens count.
    limit = length - 1
    text_only = encode(vlm.processor, proposer("text", 2).messages, image_spec=TINY_IMAGE)
    assert image_tokens > 1 and length - image_tokens < limit
    assert text_only["input_ids"].shape[1] <= limit, "lengthen the question"
    short = HFGenerator(
        vlm.model, vlm.processor, image_spec=TINY_IMAGE, max_prompt_tokens=limit, batch_size=4,
        model_digest=DIGEST,
    )  # fmt: skip
    results = short.generate([long_question, proposer("text", seed=2)])
    assert [r.failure for r in results] == ["prompt_too_long", None]
    assert results[0].prompt_tokens == length and results[0].samples == ()
    assert "not truncated" in results[0].detail and "'image'" in results[0].detail
    assert len(results[1].samples) == 3


@pytest.fixture
def stop_on_even_rows(vlm: LoadedVLM) -> Iterator[int]:
    """From the third reply token on, even batch rows must say `<|im_end|>`; odd rows never can.

    One call then holds rows that stop early (and are padded by generate) next to rows that
    run to `max_tokens`.
    """
    stop = vlm.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    steps = [0]

    def hook(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor:
        if steps[0] >= 2:
            output[0::2, -1, stop] += 100.0
        output[1::2, -1, stop] -= 100.0
        steps[0] += 1
        return output

    handle = vlm.model.lm_head.register_forward_hook(hook)
    yield stop
    handle.remove()


def test_generate_stops_at_im_end_and_strips_it(
    generator: HFGenerator, vlm: LoadedVLM, stop_on_even_rows: int
) -> None:
    request = proposer("p", seed=8, n=4, sampling=SamplingSpec(temperature=1.0, max_tokens=6))
    (result,) = generator.generate([request])  # one call: batch_size 4
    stop = stop_on_even_rows
    assert [s.finish_reason for s in result.samples] == ["stop", "length"] * 2
    for sample in result.samples[0::2]:
        assert len(sample.token_ids) == 3 and sample.token_ids[-1] == stop
        assert stop not in sample.token_ids[:-1] and "<|im_end|>" not in sample.text
        assert len(sample.logprobs) == 3 and sample.logprobs[-1] > -1e-3  # forced: p ~ 1
    for sample in result.samples[1::2]:
        assert len(sample.token_ids) == 6 and stop not in sample.token_ids


def test_generate_reports_progress_up_to_total(generator: HFGenerator, tmp_path: Path) -> None:
    events: list[Progress] = []
    requests = [proposer("p", seed=1, n=5), solver("bad", tmp_path / "absent.png", seed=2)]
    generator.generate(requests, on_progress=events.append)
    done = [event.samples_done for event in events]
    assert done == sorted(done) and done[-1] == events[-1].samples_total == 7
    assert events[-1].completion_tokens > 0 and events[-1].tokens_per_second > 0


def test_generate_mixed_batching_same_requests_same_samples(vlm: LoadedVLM, chart: Path) -> None:
    mixed = HFGenerator(
        vlm.model, vlm.processor, image_spec=TINY_IMAGE, max_prompt_tokens=512, batch_size=8,
        model_digest=DIGEST, batching="mixed",
    )  # fmt: skip
    requests: Sequence[GenerationRequest] = [
        proposer("p", seed=1, n=2),
        solver("s", chart, seed=2, n=2),
        proposer("q", seed=3, n=1, sampling=NUCLEUS),
    ]
    first, second = mixed.generate(requests), mixed.generate(requests)
    assert [r.samples for r in first] == [r.samples for r in second]
    assert [len(r.samples) for r in first] == [2, 2, 1]
