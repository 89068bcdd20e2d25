"""The SVG render sandbox: model-written SVG to RGB PNG in a pool of limited worker processes.

The reference rendered under a SIGALRM only (§13.17). Here each worker of a persistent
`WorkerPool` runs under address-space, CPU-time, open-file and file-size (0 bytes) limits in
its own scratch directory; a wall-clock deadline kills and replaces a stuck worker. Every
result carries its item's id and a reason code, so one hostile SVG loses only itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mmzero_runtime.render.errors import DuplicateIdError, Reason
from mmzero_runtime.render.rasterise import RasterJob, RasterOutcome, init_worker, rasterise
from mmzero_runtime.spec import ImageSpec, RenderSpec
from mmzero_runtime.workers import Limits, TaskResult, WorkerPool

log = logging.getLogger(__name__)

OPEN_FILES = 64
"""RLIMIT_NOFILE of a worker: its pipe, fonts and libraries, nothing more."""


@dataclass(frozen=True)
class RenderResult:
    """One item's render: an RGB PNG on white within the pixel budget, or why there is none."""

    id: str
    png: bytes | None
    reason: Reason
    detail: str
    """One sentence naming the item and what to do; empty when the render succeeded."""
    width: int = 0
    height: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def worker_limits(render: RenderSpec) -> Limits:
    """rlimits of a render worker; writes fail (RLIMIT_FSIZE 0) since rendering writes nothing."""
    return Limits(
        memory_bytes=render.memory_bytes,
        cpu_seconds_per_task=render.cpu_seconds,
        open_files=OPEN_FILES,
        file_bytes=0,
    )


def pool_failure_reason(task: TaskResult) -> Reason:
    """Reason code of an item whose worker timed out, died or raised past the task boundary."""
    if task.failure == "timeout" or task.exit_code == -signal.SIGXCPU:
        return "timeout"
    if task.failure == "memory":
        return "memory"
    return "crash"


def _too_large_input(key: str, size: int, limit: int) -> RenderResult:
    detail = f"item {key}: SVG is {size:,} bytes, over the {limit:,}-byte limit"
    return RenderResult(key, None, "too_large", f"{detail}; write a smaller document")


class BatchRenderer(Protocol):
    """What stages render through: the local `Renderer` or the render service's client."""

    def render_many(self, items: Sequence[tuple[str, str | bytes]]) -> list[RenderResult]:
        """Results in input order, each carrying its item's id."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> BatchRenderer: ...

    def __exit__(self, *exc: object) -> None: ...


class Renderer:
    """Context manager owning one render pool; `render_many` may be called many times."""

    def __init__(self, render: RenderSpec, image: ImageSpec, workdir: str | None = None) -> None:
        self._render = render
        self._image = image
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="mmzero-render-")
        """Scratch root; worker k runs in `<workdir>/w<k>` and writes nothing there."""
        workers = render.workers or len(os.sched_getaffinity(0))
        self._pool = WorkerPool(
            rasterise,
            workers=workers,
            timeout_seconds=render.timeout_seconds,
            limits=worker_limits(render),
            initializer=init_worker,
            workdir=self.workdir,
        )

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and remove the scratch directory if this renderer made it."""
        self._pool.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def workers_replaced(self) -> int:
        """Workers killed (timeout, memory, crash) and replaced since the renderer started."""
        return self._pool.replaced

    def render_many(self, items: Sequence[tuple[str, str | bytes]]) -> list[RenderResult]:
        """Render (id, svg) pairs; results are in input order and each carries its id."""
        duplicates = [key for key, n in Counter(key for key, _ in items).items() if n > 1]
        if duplicates:
            raise DuplicateIdError(
                f"item ids must be unique in a batch; repeated: {duplicates[:5]}"
            )
        results: dict[str, RenderResult] = {}
        jobs: list[RasterJob] = []
        for key, svg in items:
            rejected = self._precheck(key, svg)
            if isinstance(rejected, RenderResult):
                results[key] = rejected
            else:
                jobs.append(self._job(key, rejected))
        tasks = self._pool.map(jobs) if jobs else []
        for job, task in zip(jobs, tasks, strict=True):
            results[job.id] = _from_task(job.id, task)
        ordered = [results[key] for key, _ in items]
        _log_batch(ordered)
        return ordered

    def _precheck(self, key: str, svg: str | bytes) -> RenderResult | bytes:
        """Refuse undecodable or oversize input here, before it is shipped to a worker."""
        try:
            data = svg if isinstance(svg, bytes) else svg.encode("utf-8")
        except UnicodeEncodeError as error:
            fault = f"text is not valid Unicode ({error.reason} at {error.start})"
            return RenderResult(key, None, "parse_error", f"item {key}: {fault}; send UTF-8 text")
        if len(data) > self._render.max_svg_bytes:
            return _too_large_input(key, len(data), self._render.max_svg_bytes)
        return data

    def _job(self, key: str, svg: bytes) -> RasterJob:
        return RasterJob(
            id=key,
            svg=svg,
            min_pixels=self._image.min_pixels,
            max_pixels=self._image.max_pixels,
            max_aspect_ratio=self._render.max_aspect_ratio,
        )


_POOL_FAILURE_REMEDY: dict[Reason, str] = {
    "timeout": "rendering passed the time limit; draw fewer or simpler elements",
    "memory": "rendering passed the memory limit; draw fewer or smaller elements",
    "crash": "the renderer died on this SVG; simplify it or report the file",
}


def _from_task(key: str, task: TaskResult) -> RenderResult:
    """The item's result from its pool result; a worker's answer must echo the item's id."""
    if not task.ok:
        reason = pool_failure_reason(task)
        detail = f"item {key}: {_POOL_FAILURE_REMEDY[reason]} ({task.detail})"
        return RenderResult(key, None, reason, detail, seconds=task.seconds)
    outcome: RasterOutcome = task.value
    assert outcome.id == key, f"render result for item {outcome.id} arrived for item {key}"
    detail = "" if outcome.reason == "ok" else f"item {key}: {outcome.detail}"
    return RenderResult(
        key, outcome.png, outcome.reason, detail, outcome.width, outcome.height, task.seconds
    )


def _log_batch(results: list[RenderResult]) -> None:
    reasons = Counter(result.reason for result in results)
    log.info("rendered a batch items=%d reasons=%s", len(results), dict(reasons))
    for result in results:
        if not result.ok:
            log.debug(
                "render failed id=%s reason=%s detail=%s", result.id, result.reason, result.detail
            )


def render_file(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    render_spec: RenderSpec,
    image_spec: ImageSpec,
) -> RenderResult:
    """Render one SVG file to a PNG file through a one-worker sandbox (`mmzero render`).

    The PNG is written (atomically) only when the render succeeds; the result says why not.
    """
    source = Path(in_path)
    size = source.stat().st_size
    if size > render_spec.max_svg_bytes:  # known without reading, or starting a worker
        return _too_large_input(str(source), size, render_spec.max_svg_bytes)
    one_worker = render_spec.model_copy(update={"workers": 1})
    with Renderer(one_worker, image_spec) as renderer:
        (result,) = renderer.render_many([(str(source), source.read_bytes())])
    if result.png is not None:
        target = Path(out_path)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(result.png)
        partial.replace(target)
    return result
