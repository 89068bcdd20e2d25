"""`init_tiny`: build the tiny Qwen2-VL, warm-start it on procedural examples, cache it.

The cache directory is named by `models.tiny_cache.cache_key`, so a second call returns at once
and a changed input builds a new model. The model is built
in a temporary sibling directory and renamed into place, so a killed build leaves nothing
half-written; `warmstart.json` beside the weights records what the warm start measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tokenizers
import torch
import transformers
from transformers import AutoModelForImageTextToText

from mmzero_runtime.models import sft, tiny
from mmzero_runtime.models.inputs import encode
from mmzero_runtime.models.procedural import GENERATOR_VERSION, generate_items
from mmzero_runtime.models.processor import load_processor
from mmzero_runtime.models.tiny_cache import (
    RECORD_NAME,
    TINY_REF,
    TRAIN_THREADS,
    WarmStartConfig,
    cache_key,
    tiny_cache_root,
)
from mmzero_runtime.render import Renderer
from mmzero_runtime.spec import ImageSpec, RenderSpec
from mmzero_runtime.warmstart.measure import probe

log = logging.getLogger(__name__)


def _token_stats(
    processor: Any, examples: list[sft.Example], image_spec: ImageSpec
) -> dict[str, Any]:
    """Prompt and reply token counts (mean, max) over examples of one role."""
    prompts, replies = [], []
    for example in examples:
        prompt = encode(processor, example.messages, example.images, image_spec=image_spec)
        prompts.append(prompt["input_ids"].shape[1])
        replies.append(len(processor.tokenizer(example.response)["input_ids"]) + 1)  # + <|im_end|>
    return {
        "examples": len(examples),
        "prompt_mean": round(sum(prompts) / len(prompts), 1),
        "prompt_max": max(prompts),
        "reply_mean": round(sum(replies) / len(replies), 1),
        "reply_max": max(replies),
    }


def _phases(config: WarmStartConfig) -> list[sft.TrainSettings]:
    """All three roles, then mostly the Solver (each phase with its own warm-up and decay)."""
    mixed = sft.TrainSettings(
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        role_cycle=config.role_cycle,
        seed=config.seed,
    )
    solver = dataclasses.replace(
        mixed, steps=config.solver_phase_steps, role_cycle=config.solver_phase_cycle
    )
    return [mixed, solver] if config.solver_phase_steps else [mixed]


def warm_start(out_dir: Path, config: WarmStartConfig) -> dict[str, Any]:
    """Build the tiny model in `out_dir`, fine-tune it there, probe it; returns the record.

    Call it under `_deterministic()` (as `init_tiny` does) for the reproducible, 1-thread run.
    """
    started = time.monotonic()
    tiny.build_tiny(out_dir, seed=config.seed)
    model = AutoModelForImageTextToText.from_pretrained(out_dir, dtype=torch.float32)
    processor = load_processor(out_dir, tiny.TINY_IMAGE)
    items = generate_items(config.items, seed=config.seed)
    image_spec = tiny.TINY_IMAGE
    with Renderer(RenderSpec(workers=config.render_workers), image_spec) as renderer:
        renders = renderer.render_many([(i.id, i.svg) for i in items[: config.solver_items]])
        examples = sft.role_examples(items, {r.id: r.png for r in renders if r.png is not None})
        tokens = {
            role: _token_stats(processor, found[:64], image_spec)
            for role, found in examples.items()
        }
        built = time.monotonic()
        losses = [
            loss
            for phase in _phases(config)
            for loss in sft.train(model, processor, examples, phase, image_spec)
        ]
        model.save_pretrained(out_dir)
        trained = time.monotonic()
        result = probe(
            model, processor, renderer, image_spec,
            proposals=config.probe_proposals, coder_samples=config.coder_samples_per_proposal,
            solver_items=config.probe_solver_items, seed=config.seed,
        )  # fmt: skip
    return {
        "ref": TINY_REF,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(processor.tokenizer),
        "tokens_per_example": tokens,
        "seconds": {
            "build_and_data": round(built - started, 1),
            "train": round(trained - built, 1),
            "probe": round(time.monotonic() - trained, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "loss": {
            "first": round(losses[0], 3),
            "last_20_mean": round(sum(losses[-20:]) / len(losses[-20:]), 3),
        },
        "loss_every_20_steps": [round(loss, 3) for loss in losses[::20]],
        "shares": result.as_record(),
    }


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels and a fixed thread count while training (restored after), so the
    same seed gives the same model on any machine of the same CPU architecture."""
    previous, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(threads)


def _record(config: WarmStartConfig, key: str, measured: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        **measured,
        "config": dataclasses.asdict(config),
        "generator_version": GENERATOR_VERSION,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place; an older model at `final` is replaced, a concurrent
    build that finished first wins (its model is the same)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(final)
    except OSError:
        if not (final / RECORD_NAME).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_builds(root: Path) -> None:
    """Delete temporary build directories whose builder process is gone (a killed build)."""
    for stale in root.glob(".*.building-*"):
        pid = stale.name.rsplit(".building-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing the directory of a killed tiny-model build dir=%s", stale)
            shutil.rmtree(stale, ignore_errors=True)


def init_tiny(
    cache_root: str | Path | None = None,
    force: bool = False,
    config: WarmStartConfig | None = None,
) -> Path:
    """The warm-started tiny model's directory, built (minutes) only when not cached or `force`.

    Built in a temporary directory beside the final one and renamed into place, so a killed
    build leaves no half model; `warmstart.json` in the directory holds the measurements.
    """
    config = config or WarmStartConfig()
    root = tiny_cache_root(cache_root)
    key = cache_key(config)
    final = root / key
    if not force and (final / RECORD_NAME).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.building-{os.getpid()}-", dir=root))
    try:
        log.info("building tiny model key=%s dir=%s", key, final)
        with _deterministic():
            record = _record(config, key, warm_start(tmp, config))
        (tmp / RECORD_NAME).write_text(json.dumps(record, indent=1) + "\n")
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("tiny model ready dir=%s shares=%s", final, record["shares"])
    return final
