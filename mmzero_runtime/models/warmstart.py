"""`init_tiny`: build the tiny Qwen2-VL, warm-start it on procedural examples, cache it.

The cache directory is named by a hash of everything that determines the result (generator
version, role prompts, tokenizer and model config, training settings, seed, library versions),
so a second call returns at once and a changed input builds a new model. The model is built
in a temporary sibling directory and renamed into place, so a killed build leaves nothing
half-written; `warmstart.json` beside the weights records what the warm start measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers
import torch
import transformers
from transformers import AutoModelForImageTextToText

from mmzero_runtime import roles
from mmzero_runtime.models import sft, tiny
from mmzero_runtime.models.inputs import encode
from mmzero_runtime.models.probe import probe
from mmzero_runtime.models.procedural import GENERATOR_VERSION, generate_items
from mmzero_runtime.models.processor import load_processor
from mmzero_runtime.render import Renderer
from mmzero_runtime.spec import ImageSpec, RenderSpec

log = logging.getLogger(__name__)

TINY_REF = "builtin:tiny"
"""The model reference that names the cached warm-started tiny model."""

CACHE_ENV = "MMZERO_CACHE_DIR"
"""Overrides the cache root (default `~/.cache/mmzero`)."""

RECORD_NAME = "warmstart.json"

TRAIN_THREADS = 1
"""CPU threads of the warm start, fixed so results do not depend on the core count. One: the
tiny model's matrices are too small to split well, and on a shared machine spinning OpenMP
threads lose most of their time to other processes (benchmarks/RESULTS.md, generation)."""


@dataclass(frozen=True)
class WarmStartConfig:
    """Settings of the supervised warm start (tiny-model-notes: AdamW 2e-3, 30 warm-up steps)."""

    seed: int = 0
    items: int = 2000
    """Procedural training items (indices 0..items-1 of the seed's stream)."""
    solver_items: int = 400
    """Items rendered for Solver examples (two questions each)."""
    render_workers: int = 2
    steps: int = 800
    """Optimizer steps; each step takes one batch of a single role (less padding)."""
    batch_size: int = 8
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    role_cycle: tuple[sft.Role, ...] = ("proposer", "coder", "solver", "coder", "proposer", "coder")
    """Roles of consecutive batches: the Coder's long SVGs must render and get three in six, the
    Proposer's six tags two; the Solver's format is learnt from one (a second Solver batch in
    seven, 920 steps, measured Coder 29/52 against 43/56: benchmarks/RESULTS.md)."""
    probe_proposals: int = 16
    """Proposer samples measured after training (2 per seed topic)."""
    coder_samples_per_proposal: int = 4
    probe_solver_items: int = 16
    """Held-out items whose easy and hard questions the Solver answers."""


def tiny_cache_root(root: str | Path | None = None) -> Path:
    """Where tiny models are cached: `root`, else $MMZERO_CACHE_DIR, else ~/.cache/mmzero."""
    chosen = root or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mmzero"
    return Path(chosen).expanduser() / "tiny"


def cache_key(config: WarmStartConfig = WarmStartConfig()) -> str:
    """A short hash of everything that determines the warm-started model."""
    inputs: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "prompts": [roles.PROPOSER_INSTRUCTION, roles.CODER_INSTRUCTION, roles.SOLVER_INSTRUCTION],
        "special_tokens": [tiny.SPECIAL_TOKENS, tiny.THINK_TOKENS],
        "chat_template": tiny.CHAT_TEMPLATE,
        "tokenizer": [tiny.VOCAB_SIZE, tiny.CORPUS_ITEMS],
        "text_config": tiny.TEXT_CONFIG,
        "vision_config": tiny.VISION_CONFIG,
        "image": tiny.TINY_IMAGE.model_dump(),
        "warm_start": dataclasses.asdict(config),
        "threads": TRAIN_THREADS,
        "versions": [torch.__version__, transformers.__version__, tokenizers.__version__],
    }
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_tiny_dir(
    root: str | Path | None = None, config: WarmStartConfig = WarmStartConfig()
) -> Path | None:
    """The finished tiny model for `config`, or None when it has not been built."""
    path = tiny_cache_root(root) / cache_key(config)
    return path if (path / RECORD_NAME).is_file() else None


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


def _settings(config: WarmStartConfig) -> sft.TrainSettings:
    return sft.TrainSettings(
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        role_cycle=config.role_cycle,
        seed=config.seed,
    )


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
        losses = sft.train(model, processor, examples, _settings(config), image_spec)
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
    config: WarmStartConfig = WarmStartConfig(),
) -> Path:
    """The warm-started tiny model's directory, built (minutes) only when not cached or `force`.

    Built in a temporary directory beside the final one and renamed into place, so a killed
    build leaves no half model; `warmstart.json` in the directory holds the measurements.
    """
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
