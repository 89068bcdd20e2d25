"""Where the warm-started tiny model is cached, and the key that names it.

Kept apart from the build (`mmzero_runtime.warmstart`), which renders and trains: loading
`builtin:tiny` only looks the model up, so it imports neither the renderer nor the trainer.
The key is a hash of everything that determines the model (generator version, role prompts,
tokenizer and model config, warm-start settings, seed, library versions), so a changed input
names a new directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers
import torch
import transformers

from mmzero_runtime import roles
from mmzero_runtime.models import sft, tiny
from mmzero_runtime.models.procedural import GENERATOR_VERSION

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
    solver_items: int = 1200
    """Items rendered for Solver examples (two questions each): one pass of the Solver phase."""
    render_workers: int = 2
    steps: int = 800
    """Optimizer steps of all three roles; each step takes one batch of a single role (less
    padding)."""
    solver_phase_steps: int = 1200
    """Steps after them, from a fresh warm-up, three in five of them the Solver's (720): its
    answers, not only its format. After the mixed steps alone the Solver counted bars at chance
    (25 %), and the self-evolving loop's majority labels need a Solver above chance; 300 Solver
    steps reached 25 % on counts, 700 about 35 % (benchmarks/RESULTS.md, "What the tiny Solver
    can learn from pixels"). The Proposer and Coder batches in between keep them from
    forgetting their format (Solver batches alone left 0 of 16 proposals parsing)."""
    solver_phase_cycle: tuple[sft.Role, ...] = ("solver", "solver", "proposer", "solver", "coder")
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
    probe_solver_items: int = 64
    """Held-out items whose easy and hard questions the Solver answers (128 answers; the
    benchmark's larger sample and intervals are in benchmarks/learning.py)."""


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
