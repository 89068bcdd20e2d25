"""`pipeline.generate`: what a stage learns from a batch of generation results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from mmzero_runtime.generation.base import (
    GenerationRequest,
    GenerationResult,
    Progress,
    Sample,
)
from mmzero_runtime.roles import build_proposer_messages
from mmzero_runtime.spec import MMZeroRun, SamplingSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.graph.plan import all_stages
from mmzero_runtime.stages.kinds.pipeline import generate
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.storage.store import LocalStore


class TooLong:
    """A generator whose prompt limit no prompt fits, except the ids in `fits`."""

    def __init__(self, fits: Sequence[str] = ()) -> None:
        self.fits = set(fits)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_progress: Callable[[Progress], None] | None = None,
    ) -> list[GenerationResult]:
        return [
            GenerationResult(r.id, (Sample("ok", (1,), (0.0,), "stop"),), 5, "d")
            if r.id in self.fits
            else GenerationResult(r.id, (), 700 + i, "d", "prompt_too_long", "over the limit")
            for i, r in enumerate(requests)
        ]


def _context(tmp_path: Path) -> StageContext:
    run = MMZeroRun()
    return StageContext(run, LocalStore(tmp_path), all_stages(run.spec)[0])


def _requests(n: int) -> list[GenerationRequest]:
    sampling = SamplingSpec(max_tokens=4)
    return [
        GenerationRequest(f"r{i}", build_proposer_messages("maps"), (), 1, sampling, i)
        for i in range(n)
    ]


def test_generate_every_prompt_too_long_raises_stage_error_naming_the_limit(
    tmp_path: Path,
) -> None:
    """Was a bare ZeroDivisionError in Proposer GRPO's `proposer/parse_rate` (issue 21)."""
    with pytest.raises(StageError) as refused:
        generate(_context(tmp_path), TooLong(), _requests(3))
    assert str(refused.value) == (
        "stage i1-proposer-grpo: no request could run: all 3 prompts are longer than the "
        "model's max_prompt_tokens (the shortest has 700 tokens, image tokens included); raise "
        "roles.<role>.max_prompt_tokens of the role generating here, or lower image.max_pixels"
    )


def test_generate_one_prompt_that_fits_returns_every_result(tmp_path: Path) -> None:
    results = generate(_context(tmp_path), TooLong(fits=["r1"]), _requests(3))
    assert [r.ok for r in results.values()] == [False, True, False]


def test_generate_no_requests_returns_nothing(tmp_path: Path) -> None:
    assert generate(_context(tmp_path), TooLong(), []) == {}
