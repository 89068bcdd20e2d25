"""The artifact key layout: where every stage's inputs and outputs live in the store.

Keys are relative paths ("/"-separated) under the run's root in the artifact store (a local
directory or an S3 prefix). A stage writes everything under its own prefix and writes
`MANIFEST.json` there last; the manifest's existence is what "done" means to both executors.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["proposer", "coder", "solver"]
ROLES: tuple[Role, ...] = ("proposer", "coder", "solver")

BASE_MODEL = "base/model"
"""The base VLM every role starts from in iteration 1 (written by `mmzero import` or by the
executor from `spec.model`)."""

RUN_FILE = "run.yaml"
"""The effective run file, pinned when the run starts (stage processes read it)."""

RUN_MANIFEST = "run-manifest.json"
"""Versions, spec hash and every stage's digests: what a rerun needs to reproduce the run."""

REPORT_FILE = "report.html"
"""The run's HTML report, rebuilt after each `mmzero run` and by `mmzero report`."""

MODEL_DIR = "model"
"""Sub-directory of a GRPO stage holding its final checkpoint (Hugging Face layout)."""

PROPOSALS_FOR_CODER = "proposals-coder.jsonl"
PROPOSALS_FOR_SOLVER = "proposals-solver.jsonl"
RENDERS = "renders.jsonl"
"""The Coder-data stage's render outcomes, one row per proposal."""
CODER_TRAIN_SET = "coder-train.jsonl"
CANDIDATES = "candidates.jsonl"
"""Every item the Solver-data stage labelled, kept or dropped."""
SOLVER_TRAIN_SET = "solver-train.jsonl"
DRAWS = "draws.jsonl"
"""The Solver-data stage's render outcome per proposal."""
IMAGES_DIR = "images"
EVAL_RESULTS = "results.jsonl"
PREDICTIONS = "predictions.jsonl"
"""One benchmark's graded answers, under `benchmarks/<name>/` of the evaluate stage."""
PROBES = "probes.jsonl"
"""The Solver-data stage's labelled known-answer probes."""
REWARDS = "rewards.jsonl"
STEPS = "steps.jsonl"
"""A GRPO stage's tables: one row per sampled response, one row per step."""


def stage_prefix(iteration: int, kind: str) -> str:
    """Prefix of one stage's outputs, e.g. `i1/coder-grpo`."""
    if iteration < 1:
        raise ValueError(f"iteration: got {iteration}, iterations count from 1")
    return f"i{iteration}/{kind}"


def checkpoint_key(role: Role, iteration: int) -> str:
    """Key of `role`'s model after `iteration`; iteration 0 is the base model (§2.1 chaining)."""
    if iteration == 0:
        return BASE_MODEL
    return f"{stage_prefix(iteration, f'{role}-grpo')}/{MODEL_DIR}"


def checkpoint_iteration(key: str) -> int:
    """The iteration after which the checkpoint `key` was made (0: the base model).

    >>> checkpoint_iteration("i3/solver-grpo/model"), checkpoint_iteration(BASE_MODEL)
    (3, 0)
    """
    prefix = producer_prefix(key)
    return 0 if prefix == "base" else int(prefix.split("/")[0].removeprefix("i"))


def producer_prefix(key: str) -> str:
    """Prefix of the stage that wrote `key`: `base` for the base model, else `i<N>/<stage>`.

    >>> producer_prefix("i2/coder-grpo/model"), producer_prefix(BASE_MODEL)
    ('i2/coder-grpo', 'base')
    """
    parts = key.split("/")
    return parts[0] if parts[0] == "base" else "/".join(parts[:2])
