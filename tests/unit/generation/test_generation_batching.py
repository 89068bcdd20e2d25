"""Batch plans, input stacking and the seeded sampler, on hand-made requests and logits."""

from __future__ import annotations

import pytest
import torch

from mmzero_runtime.generation import GenerationRequest, sample_seeds
from mmzero_runtime.generation.batching import Batching, plan_batches
from mmzero_runtime.generation.hf import stack_inputs
from mmzero_runtime.generation.sampler import SeededSampler
from mmzero_runtime.roles import build_proposer_messages
from mmzero_runtime.spec import SamplingSpec

HOT = SamplingSpec(temperature=1.0, max_tokens=4)
COLD = SamplingSpec(temperature=0.5, max_tokens=4)


def request(index: int, n: int, sampling: SamplingSpec = HOT) -> GenerationRequest:
    return GenerationRequest(f"r{index}", build_proposer_messages("maps"), (), n, sampling, index)


REQUESTS = [request(0, 3), request(1, 2, COLD), request(2, 5), request(3, 1, COLD)]
LENGTHS = [30, 10, 20, 40]


@pytest.mark.parametrize("batching", ["request", "mixed"])
@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_plan_batches_every_sample_once_with_its_own_seed(
    batching: Batching, batch_size: int
) -> None:
    calls = plan_batches(REQUESTS, LENGTHS, batch_size=batch_size, batching=batching)
    rows = [row for call in calls for row in call]
    assert sorted((row.request, row.sample) for row in rows) == [
        (i, s) for i, r in enumerate(REQUESTS) for s in range(r.n)
    ]
    for row in rows:
        assert (
            row.seed
            == sample_seeds(REQUESTS[row.request].seed, REQUESTS[row.request].n)[row.sample]
        )
    assert all(1 <= len(call) <= batch_size for call in calls)
    # A call never mixes sampling settings.
    assert all(len({REQUESTS[row.request].sampling for row in call}) == 1 for call in calls)


def test_plan_batches_request_mode_never_mixes_requests() -> None:
    calls = plan_batches(REQUESTS, LENGTHS, batch_size=16, batching="request")
    assert [[row.request for row in call] for call in calls] == [[0] * 3, [1] * 2, [2] * 5, [3]]


def test_plan_batches_mixed_mode_fills_calls_shortest_prompts_first() -> None:
    calls = plan_batches(REQUESTS, LENGTHS, batch_size=4, batching="mixed")
    # HOT: r2 (20 tokens) before r0 (30); COLD: r1 (10) before r3 (40).
    assert [[row.request for row in call] for call in calls] == [
        [2, 2, 2, 2],
        [2, 0, 0, 0],
        [1, 1, 3],
    ]


def test_plan_batches_skipped_requests_get_no_rows() -> None:
    calls = plan_batches(REQUESTS, LENGTHS, batch_size=8, batching="mixed", skip=frozenset({0, 3}))
    assert {row.request for call in calls for row in call} == {1, 2}


def test_plan_batches_zero_batch_size_raises() -> None:
    with pytest.raises(ValueError, match="batch_size: got 0"):
        plan_batches(REQUESTS, LENGTHS, batch_size=0, batching="request")


def test_stack_inputs_left_pads_prompt_entries_and_concatenates_pixels() -> None:
    short = {
        "input_ids": torch.tensor([[7, 8]]),
        "attention_mask": torch.ones(1, 2, dtype=torch.long),
        "mm_token_type_ids": torch.tensor([[0, 1]]),
        "pixel_values": torch.ones(4, 3),
        "image_grid_thw": torch.tensor([[1, 2, 2]]),
    }
    long = {
        "input_ids": torch.tensor([[1, 2, 3]]),
        "attention_mask": torch.ones(1, 3, dtype=torch.long),
        "mm_token_type_ids": torch.zeros(1, 3, dtype=torch.long),
    }
    stacked = stack_inputs([short, long, short], pad_id=0)
    assert stacked["input_ids"].tolist() == [[0, 7, 8], [1, 2, 3], [0, 7, 8]]
    assert stacked["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1], [0, 1, 1]]
    assert stacked["mm_token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 1]]
    assert stacked["pixel_values"].shape == (8, 3)  # the text-only row adds no pixels
    assert stacked["image_grid_thw"].tolist() == [[1, 2, 2], [1, 2, 2]]


LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def draw(sampling: SamplingSpec, seeds: list[int], steps: int = 1) -> torch.Tensor:
    """Tokens `(steps, rows)` the sampler picks for fixed logits."""
    sampler = SeededSampler(seeds, sampling, torch.device("cpu"))
    scores = LOGITS.repeat(len(seeds), 1)
    ids = torch.zeros(len(seeds), 1, dtype=torch.long)
    for _ in range(steps):
        forced = sampler(ids, scores.clone())  # type: ignore[arg-type]
        assert (forced.argmax(-1) == sampler.tokens[-1]).all()
    return torch.stack(sampler.tokens)


def test_seeded_sampler_matches_softmax_frequencies() -> None:
    # 4000 rows, one draw each: frequencies within 0.03 of softmax(logits / 0.5).
    tokens = draw(COLD, list(range(4000)))[0]
    frequencies = torch.bincount(tokens, minlength=len(LOGITS)).float() / len(tokens)
    assert torch.allclose(frequencies, torch.softmax(LOGITS / 0.5, -1), atol=0.03)


def test_seeded_sampler_row_depends_only_on_its_seed() -> None:
    together = draw(HOT, [11, 12, 13], steps=20)
    alone = draw(HOT, [12], steps=20)
    assert torch.equal(together[:, 1], alone[:, 0])
    assert not torch.equal(together[:, 0], together[:, 2])


@pytest.mark.parametrize(
    ("sampling", "allowed"),
    [
        (SamplingSpec(top_k=2), {0, 1}),  # only the two largest logits
        (
            SamplingSpec(top_p=0.5),
            {0},
        ),  # softmax(LOGITS)[0] is 0.56 >= 0.5: the nucleus is one token
        (SamplingSpec(temperature=0.0), {0}),  # greedy: the argmax
    ],
    ids=["top-k", "top-p", "greedy"],
)
def test_seeded_sampler_truncation_keeps_draws_inside(
    sampling: SamplingSpec, allowed: set[int]
) -> None:
    assert set(draw(sampling, list(range(500)))[0].tolist()) == allowed


def test_seeded_sampler_logprobs_are_full_vocab_at_temperature() -> None:
    sampler = SeededSampler([1, 2], SamplingSpec(temperature=0.5, top_k=1), torch.device("cpu"))
    sampler(torch.zeros(2, 1, dtype=torch.long), LOGITS.repeat(2, 1))  # type: ignore[arg-type]
    # top-k 1 always picks token 0, yet its log-prob is the untruncated one.
    expected = torch.log_softmax(LOGITS / 0.5, -1)[0]
    assert torch.allclose(sampler.logprobs[0], expected.repeat(2))
