"""Progress bars of a stage: one bar per stage on the terminal, silent when not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from mmzero_runtime.generation.base import Progress
from mmzero_runtime.stages.process.context import StageContext


def progress_bar(ctx: StageContext, *, total: int, initial: int = 0, unit: str = "it") -> Any:
    """A tqdm bar named after the stage; live figures go in its postfix."""
    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        desc=ctx.name,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None,  # off when stderr is not a terminal (CI logs)
    )


def follow(bar: Any) -> Callable[[Progress], None]:
    """A generation progress callback that moves `bar` to the samples done so far."""

    def update(progress: Progress) -> None:
        bar.update(progress.samples_done - bar.n)
        if progress.seconds > 0:
            bar.set_postfix(tokens_per_s=round(progress.tokens_per_second), refresh=False)

    return update
