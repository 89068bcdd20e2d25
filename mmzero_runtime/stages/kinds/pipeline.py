"""The role operations stages share: sample from a model, draw and render SVGs, ask the Solver.

Each operation takes items by id and returns outcomes by id, records every non-model failure
(unreadable image, overlong prompt, render timeout) in the stage's ledger, and never lets one
bad item stop the others; the ledger's failure-share check decides when a batch is unusable.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmzero_runtime import metrics as prometheus
from mmzero_runtime.generation.base import GenerationRequest, GenerationResult, Generator, Progress
from mmzero_runtime.render import BatchRenderer
from mmzero_runtime.rewards.grading import Grader
from mmzero_runtime.rewards.judgement import SolverAnswers
from mmzero_runtime.roles import (
    Proposal,
    build_coder_messages,
    build_solver_messages,
    extract_boxed,
    extract_svg,
)
from mmzero_runtime.roles.coder import Extraction
from mmzero_runtime.spec import SamplingSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.launch import server_env
from mmzero_runtime.stages.process.context import StageContext

log = logging.getLogger(__name__)

GENERATION_BATCH = 16
"""Sequences per `generate` call of the in-process backend."""

RENDER_INFRA_FAILURES = frozenset({"timeout", "memory", "crash"})
"""Render outcomes that may be the machine's fault: counted in the ledger (a batch full of them
stops the stage), while still scoring the drawing as not rendered, as the reference does."""


def open_generator(ctx: StageContext, model_dir: Path, digest: str, max_prompt_tokens: int) -> Any:
    """An in-process generator over the checkpoint in `model_dir`."""
    from mmzero_runtime.generation.hf import HFGenerator
    from mmzero_runtime.models.loading import load_vlm

    loaded = load_vlm(model_dir, image_spec=ctx.spec.image, device=ctx.device)
    return HFGenerator(
        loaded.model,
        loaded.processor,
        image_spec=ctx.spec.image,
        max_prompt_tokens=max_prompt_tokens,
        batch_size=GENERATION_BATCH,
        model_digest=digest,
    )


SERVER_WAIT_SECONDS = 1800
"""How long a stage waits for a served frozen role that is still loading or restarting."""


def frozen_generator(ctx: StageContext, purpose: str, max_prompt_tokens: int) -> Generator:
    """The frozen role of input `purpose`: its server when `MMZERO_SERVER_<PURPOSE>` names one
    (checked to hold the same checkpoint), else loaded in this process."""
    digest = ctx.model_digest(purpose)
    url = os.environ.get(server_env(purpose))
    if url:
        from mmzero_runtime.generation.http import HTTPGenerator

        log.info("frozen role purpose=%s served at %s", purpose, url)
        return HTTPGenerator(url, model_digest=digest, retry_seconds=SERVER_WAIT_SECONDS)
    generator: Generator = open_generator(ctx, ctx.model_dir(purpose), digest, max_prompt_tokens)
    return generator


def generate(
    ctx: StageContext,
    generator: Generator,
    requests: Sequence[GenerationRequest],
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, GenerationResult]:
    """Results by request id; failed requests are returned as such, and those that are not the
    model's doing (an unreadable image) are counted in the ledger."""
    started = time.monotonic()
    results = generator.generate(requests, on_progress=on_progress)
    prometheus.observe_generation(
        sum(r.completion_tokens for r in results), time.monotonic() - started
    )
    for result in results:
        # An overlong prompt is built from model output (a rambling proposal): that item is
        # dropped like any bad output, not counted as a failure of the machinery.
        infra = result.failure if result.failure != "prompt_too_long" else None
        ctx.ledger.record("generation", result.request_id, infra, result.detail)
    if results and all(result.failure == "prompt_too_long" for result in results):
        # Not one prompt fits: a limit too small for the prompts themselves, never model output
        # (the ledger does not count these, so nothing else would stop the stage here).
        shortest = min(result.prompt_tokens for result in results)
        size = f" (the shortest has {shortest} tokens, image tokens included)" if shortest else ""
        raise StageError(
            f"stage {ctx.name}: no request could run: all {len(results)} prompts are longer "
            f"than the model's max_prompt_tokens{size}; raise roles.<role>.max_prompt_tokens "
            "of the role generating here, or lower image.max_pixels"
        )
    return {result.request_id: result for result in results}


class RewardServices:
    """What a GRPO stage's reward runs on: frozen models (by input purpose), the render
    sandbox and the grader; a context manager that stops the worker pools on exit. Only a
    trainer's leading rank rewards, so the other ranks load no frozen model (the sandbox's
    workers start only when asked)."""

    def __init__(self, ctx: StageContext, frozen: dict[str, int]) -> None:
        """`frozen` maps each input purpose to load to its prompt-token limit."""
        leader = ctx.ranks.leader
        self.models = {
            purpose: frozen_generator(ctx, purpose, limit)
            for purpose, limit in frozen.items()
            if leader
        }
        self.renderer = ctx.renderer()
        self.grader = Grader(ctx.spec.grading)

    def __enter__(self) -> RewardServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.renderer.close()
        self.grader.close()


@dataclass(frozen=True)
class Drawing:
    """One SVG a Coder wrote, what was extracted from it and how its render went."""

    id: str
    text: str
    extraction: Extraction
    reason: str
    """Render reason (`ok`, `parse_error`, ...) or `no_svg` when nothing was extracted."""
    image: Path | None
    """The PNG (on white, within the pixel budget) when it rendered."""
    detail: str = ""

    @property
    def rendered(self) -> bool:
        return self.image is not None


def render_drawings(
    ctx: StageContext, renderer: BatchRenderer, texts: dict[str, str], image_dir: Path
) -> dict[str, Drawing]:
    """Extract and render each Coder response; PNGs go to `image_dir/<id>.png`."""
    image_dir.mkdir(parents=True, exist_ok=True)
    extractions = {item_id: extract_svg(text) for item_id, text in texts.items()}
    to_render = [(i, e.code) for i, e in extractions.items() if not e.syntax_error]
    rendered = {r.id: r for r in renderer.render_many(to_render)}
    prometheus.observe_renders(r.reason for r in rendered.values())
    drawings: dict[str, Drawing] = {}
    for item_id, extraction in extractions.items():
        result = rendered.get(item_id)
        if result is None:
            drawings[item_id] = Drawing(item_id, texts[item_id], extraction, "no_svg", None)
            continue
        infra = result.reason in RENDER_INFRA_FAILURES
        ctx.ledger.record("render", item_id, result.reason if infra else None, result.detail)
        image = None
        if result.png is not None:
            image = image_dir / f"{item_id}.png"
            image.write_bytes(result.png)
        drawings[item_id] = Drawing(
            item_id, texts[item_id], extraction, result.reason, image, result.detail
        )
    return drawings


def coder_requests(
    ctx: StageContext, proposals: dict[str, Proposal], n: int, sampling: SamplingSpec, tag: str
) -> list[GenerationRequest]:
    """`n` drawings per proposal, seeded per proposal."""
    return [
        GenerationRequest(pid, build_coder_messages(p), (), n, sampling, ctx.seed(tag, pid))
        for pid, p in proposals.items()
    ]


def draw(
    ctx: StageContext,
    coder: Generator,
    renderer: BatchRenderer,
    proposals: dict[str, Proposal],
    *,
    n: int,
    sampling: SamplingSpec,
    tag: str,
    image_dir: Path,
) -> dict[str, list[Drawing]]:
    """`n` rendered drawings per proposal id (in sample order); ids are `<proposal>-c<j>`."""
    results = generate(ctx, coder, coder_requests(ctx, proposals, n, sampling, tag))
    texts = {
        f"{pid}-c{j}": sample.text
        for pid, result in results.items()
        for j, sample in enumerate(result.samples)
    }
    drawings = render_drawings(ctx, renderer, texts, image_dir)
    for pid, result in results.items():
        if not result.ok:  # no drawing at all: each of the n counts as one that did not render
            for j in range(n):
                failed = Drawing(f"{pid}-c{j}", "", extract_svg(""), str(result.failure), None)
                drawings[failed.id] = failed
    return {pid: [drawings[f"{pid}-c{j}"] for j in range(n)] for pid in proposals}


@dataclass(frozen=True)
class Question:
    """A question about one image, asked of the Solver."""

    id: str
    image: Path
    text: str


def ask(
    ctx: StageContext,
    solver: Generator,
    questions: Sequence[Question],
    *,
    n: int,
    sampling: SamplingSpec,
    tag: str,
) -> dict[str, tuple[str | None, ...]]:
    """The boxed answers (None: no box) of `n` Solver samples per question; questions whose
    request failed (counted in the ledger) are absent."""
    requests = [
        GenerationRequest(
            q.id, build_solver_messages(q.text), (q.image,), n, sampling, ctx.seed(tag, q.id)
        )
        for q in questions
    ]
    results = generate(ctx, solver, requests)
    return {
        qid: tuple(extract_boxed(sample.text) for sample in result.samples)
        for qid, result in results.items()
        if result.ok
    }


def judge_drawings(
    ctx: StageContext,
    solver: Generator,
    drawings: Sequence[tuple[Drawing, Proposal]],
    *,
    n: int,
    tag: str,
) -> dict[str, SolverAnswers | None]:
    """The frozen Solver's `n` answers to the easy and the hard question of each rendered
    drawing, by drawing id (the Proposer's and the Coder's reward both need them); None for a
    drawing that did not render or whose questions could not be asked."""
    questions = [
        Question(f"{drawing.id}-{kind}", drawing.image, text)
        for drawing, proposal in drawings
        if drawing.image is not None
        for kind, text in (("easy", proposal.easy_question), ("hard", proposal.hard_question))
    ]
    sampling = ctx.spec.data.solver_service_sampling
    answers = ask(ctx, solver, questions, n=n, sampling=sampling, tag=tag)
    measured: dict[str, SolverAnswers | None] = {}
    for drawing, _ in drawings:
        easy, hard = answers.get(f"{drawing.id}-easy"), answers.get(f"{drawing.id}-hard")
        if drawing.rendered and easy is not None and hard is not None:
            measured[drawing.id] = SolverAnswers(easy, hard)
        else:
            measured[drawing.id] = None
    return measured
