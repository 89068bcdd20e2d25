"""The warm start's supervised step: batches, masking and one real optimiser update."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from mmzero_runtime.models import sft
from mmzero_runtime.models.inputs import encode
from mmzero_runtime.models.loading import LoadedVLM
from mmzero_runtime.models.procedural import generate_items
from mmzero_runtime.models.tiny import TINY_IMAGE

ITEMS = generate_items(6, seed=5)
PNG = Image.new("RGB", (320, 240), "white")
EXAMPLES = sft.role_examples(ITEMS, {item.id: PNG for item in ITEMS[:3]})


def test_role_examples_solver_only_for_rendered_items() -> None:
    assert [len(EXAMPLES[role]) for role in ("proposer", "coder", "solver")] == [6, 6, 6]


def test_collate_labels_only_response_and_end_of_turn(tiny_vlm: LoadedVLM) -> None:
    processor = tiny_vlm.processor
    example = EXAMPLES["coder"][0]
    batch = sft.collate(processor, [example, EXAMPLES["coder"][1]], TINY_IMAGE)
    prompt = encode(processor, example.messages, image_spec=TINY_IMAGE)["input_ids"][0]
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    n = len(prompt)
    assert torch.equal(ids[:n], prompt)  # the same prompt path as rollout
    assert (labels[:n] == sft.IGNORE).all()
    reply = labels[n:][labels[n:] != sft.IGNORE]
    text = processor.tokenizer.decode(reply)
    assert text == example.response + "<|im_end|>"
    pad = batch["attention_mask"][0] == 0
    assert (batch["labels"][0][pad] == sft.IGNORE).all()


def test_collate_solver_batch_carries_pixels(tiny_vlm: LoadedVLM) -> None:
    batch = sft.collate(tiny_vlm.processor, EXAMPLES["solver"][:2], TINY_IMAGE)
    assert batch["image_grid_thw"].tolist() == [[1, 12, 16]] * 2
    assert batch["mm_token_type_ids"].sum().item() == 96


def test_batches_follow_role_cycle_deterministically() -> None:
    first = sft.batches(EXAMPLES, ("proposer", "coder", "solver"), 2, seed=1)
    second = sft.batches(EXAMPLES, ("proposer", "coder", "solver"), 2, seed=1)
    drawn = [next(first) for _ in range(9)]
    assert [b[0].role for b in drawn] == ["proposer", "coder", "solver"] * 3
    assert all(len({e.role for e in b}) == 1 for b in drawn)
    assert drawn == [next(second) for _ in range(9)]


@pytest.mark.slow
def test_train_two_steps_finite_loss_every_parameter_changed(tiny_vlm: LoadedVLM) -> None:
    model = copy.deepcopy(tiny_vlm.model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    settings = sft.TrainSettings(
        steps=2, batch_size=2, learning_rate=1e-3, warmup_steps=1, weight_decay=0.0,
        max_grad_norm=1.0, role_cycle=("solver", "coder"), seed=0,
    )  # fmt: skip
    losses = sft.train(model, tiny_vlm.processor, EXAMPLES, settings, TINY_IMAGE)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
