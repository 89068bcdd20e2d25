"""Response log-probs from padded batches equal a plain full-logits forward of each row alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmzero_runtime.models.loading import load_vlm
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.training.batch import Prompt, Rollout, collate, encode_prompts
from mmzero_runtime.training.errors import TrainingError
from mmzero_runtime.training.logprobs import response_logprobs

pytestmark = pytest.mark.integration


def rollouts(image: Path) -> list[Rollout]:
    """An image prompt twice (one group) and a text-only prompt, responses of 4, 2 and 6 tokens."""
    solver = build_solver_messages("Which bar is taller?")
    proposer = build_proposer_messages("chart and graph understanding")
    return [
        Rollout("a", "g-image", solver, image, [40, 41, 42, 43], 1.0),
        Rollout("b", "g-text", proposer, None, [50, 51], 0.0),
        Rollout("c", "g-image", solver, image, [60, 61, 62, 63, 64, 65], 0.0),
    ]


def full_forward_logprobs(
    model: object, prompt: Prompt, response: list[int], t: float
) -> torch.Tensor:
    """log_softmax over the whole vocabulary of one unpadded row, the slow obvious way."""
    ids = torch.cat([prompt.input_ids, torch.tensor(response)]).unsqueeze(0)
    types = torch.cat([prompt.mm_token_type_ids, torch.zeros(len(response), dtype=torch.long)])
    kwargs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": types[None],
    }
    if prompt.pixel_values is not None:
        kwargs |= {"pixel_values": prompt.pixel_values, "image_grid_thw": prompt.image_grid_thw}
    logits = model(**kwargs).logits[0].float() / t  # type: ignore[operator]
    start = prompt.input_ids.numel()
    span = logits.log_softmax(-1)[start - 1 : start - 1 + len(response)]  # position p predicts p+1
    return span.gather(-1, torch.tensor(response)[:, None])[:, 0]


@pytest.mark.parametrize("chunk_tokens", [1024, 4], ids=["one-chunk", "chunked"])
def test_response_logprobs_padded_batch_equals_each_row_alone(
    tiny_vlm_dir: Path, chart_png: Path, chunk_tokens: int
) -> None:
    loaded = load_vlm(tiny_vlm_dir, image_spec=TINY_IMAGE)
    items = rollouts(chart_png)
    prompts = encode_prompts(loaded.processor, items, image_spec=TINY_IMAGE, max_prompt_tokens=4096)
    rows = [prompts[r.group_id] for r in items]
    batch = collate(rows, [torch.tensor(r.response_ids) for r in items], pad_id=0)
    with torch.no_grad():
        logprobs, entropy = response_logprobs(
            loaded.model, batch, temperature=0.7, with_entropy=True, chunk_tokens=chunk_tokens
        )
        for row, item in enumerate(items):
            expected = full_forward_logprobs(loaded.model, rows[row], list(item.response_ids), 0.7)
            torch.testing.assert_close(logprobs[row, : len(item.response_ids)], expected)
    assert entropy is not None
    assert batch.response_mask.tolist() == [[1] * 4 + [0] * 2, [1] * 2 + [0] * 4, [1] * 6]
    # the entropy of a tempered softmax over V tokens lies in (0, log V]
    vocab = loaded.model.config.text_config.vocab_size
    assert bool(((entropy > 0) & (entropy <= torch.log(torch.tensor(float(vocab))))).all())


def test_response_logprobs_chunked_gradient_equals_unchunked(
    tiny_vlm_dir: Path, chart_png: Path
) -> None:
    loaded = load_vlm(tiny_vlm_dir, image_spec=TINY_IMAGE)
    items = rollouts(chart_png)
    prompts = encode_prompts(loaded.processor, items, image_spec=TINY_IMAGE, max_prompt_tokens=4096)
    batch = collate(
        [prompts[r.group_id] for r in items],
        [torch.tensor(r.response_ids) for r in items],
        pad_id=0,
    )
    grads = []
    for chunk_tokens in (1024, 4):
        loaded.model.zero_grad()
        logprobs, _ = response_logprobs(
            loaded.model, batch, temperature=1.0, chunk_tokens=chunk_tokens
        )
        (logprobs * batch.response_mask).sum().backward()
        grads.append([p.grad.clone() for p in loaded.model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(list(loaded.model.parameters()))  # vision tower included
    for one, chunked in zip(*grads, strict=True):
        torch.testing.assert_close(one, chunked)


def test_encode_prompts_rejects_long_prompts_and_mixed_groups(
    tiny_vlm_dir: Path, chart_png: Path
) -> None:
    loaded = load_vlm(tiny_vlm_dir, image_spec=TINY_IMAGE)
    items = rollouts(chart_png)
    with pytest.raises(TrainingError, match="exceeds max_prompt_tokens 16"):
        encode_prompts(loaded.processor, items, image_spec=TINY_IMAGE, max_prompt_tokens=16)
    mixed = [items[0], Rollout("d", "g-image", items[1].messages, None, [7], 1.0)]
    with pytest.raises(TrainingError, match="another prompt"):
        encode_prompts(loaded.processor, mixed, image_spec=TINY_IMAGE, max_prompt_tokens=4096)
