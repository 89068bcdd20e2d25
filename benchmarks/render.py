"""Render throughput: the SVG sandbox against plain in-process cairosvg, per core used.

Renders the same procedurally generated chart SVGs (bar, line and pie charts with text labels,
fixed seed) with `cairosvg.svg2png` in this process and through `Renderer` with 1 and N
workers, and prints a markdown table. The sandbox should keep >= 0.9x the in-process rate per
core. Usage: `uv run python benchmarks/render.py [--count 240] [--workers N] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmzero_runtime.render import Renderer

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
HEAD = '<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
TEXT = '<text x="{x:.1f}" y="{y:.1f}" font-family="sans-serif" font-size="{s}"{extra}>{t}</text>'


def text(x: float, y: float, label: str, size: int = 14, extra: str = "") -> str:
    return TEXT.format(x=x, y=y, s=size, extra=extra, t=label)


def bar_chart(rng: random.Random, w: int, h: int) -> str:
    """Vertical bars with value and category labels, axes and a title."""
    n = rng.randint(3, 12)
    values = [rng.uniform(5, 100) for _ in range(n)]
    left, bottom, top = 60, h - 50, 50
    step = (w - left - 20) / n
    parts = [HEAD.format(w=w, h=h), text(w / 2, 30, "Quarterly sales", 20, ' text-anchor="middle"')]
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{w - 10}" y2="{bottom}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>')
    for i, value in enumerate(values):
        height = (bottom - top) * value / 100
        x = left + i * step + step * 0.15
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.1f}" y="{bottom - height:.1f}" width="{step * 0.7:.1f}" '
            f'height="{height:.1f}" fill="{colour}"/>'
        )
        middle = x + step * 0.35
        parts.append(text(middle, bottom - height - 5, f"{value:.0f}", 12, ' text-anchor="middle"'))
        parts.append(text(middle, bottom + 18, f"Q{i + 1}", 12, ' text-anchor="middle"'))
    return "".join(parts) + "</svg>"


def line_chart(rng: random.Random, w: int, h: int) -> str:
    """Two or three series as polylines over a grid, with a legend."""
    left, bottom, top, right = 60, h - 50, 50, w - 120
    n = rng.randint(10, 50)
    parts = [
        HEAD.format(w=w, h=h),
        text(w / 2, 30, "Temperature by day", 20, ' text-anchor="middle"'),
    ]
    for k in range(6):
        y = top + (bottom - top) * k / 5
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ccc"/>')
        parts.append(text(left - 8, y + 4, f"{100 - 20 * k}", 11, ' text-anchor="end"'))
    for series in range(rng.randint(2, 3)):
        level = rng.uniform(20, 80)
        points = []
        for i in range(n):
            level = min(100.0, max(0.0, level + rng.gauss(0, 6)))
            x = left + (right - left) * i / (n - 1)
            points.append(f"{x:.1f},{bottom - (bottom - top) * level / 100:.1f}")
        colour = PALETTE[series]
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        parts.append(
            f'<rect x="{right + 15}" y="{top + 25 * series}" width="14" height="14" '
            f'fill="{colour}"/>'
        )
        parts.append(text(right + 35, top + 25 * series + 12, f"Series {series + 1}", 12))
    return "".join(parts) + "</svg>"


def pie_chart(rng: random.Random, w: int, h: int) -> str:
    """Arc-path slices with percentage labels and a title."""
    values = [rng.uniform(1, 10) for _ in range(rng.randint(3, 8))]
    total = sum(values)
    cx, cy, r = w / 2, h / 2 + 15, min(w, h) / 2 - 60
    parts = [HEAD.format(w=w, h=h), text(w / 2, 30, "Market share", 20, ' text-anchor="middle"')]
    start = 0.0
    for i, value in enumerate(values):
        sweep = 2 * math.pi * value / total
        end = start + sweep
        x0, y0 = cx + r * math.cos(start), cy + r * math.sin(start)
        x1, y1 = cx + r * math.cos(end), cy + r * math.sin(end)
        large = 1 if sweep > math.pi else 0
        parts.append(
            f'<path d="M{cx:.1f},{cy:.1f} L{x0:.1f},{y0:.1f} A{r:.1f},{r:.1f} 0 {large} 1 '
            f'{x1:.1f},{y1:.1f} Z" fill="{PALETTE[i % len(PALETTE)]}" stroke="white"/>'
        )
        middle = start + sweep / 2
        lx, ly = cx + (r + 25) * math.cos(middle), cy + (r + 25) * math.sin(middle)
        label = f"{100 * value / total:.0f}%"
        parts.append(text(lx, ly, label, 13, ' text-anchor="middle"'))
        start = end
    return "".join(parts) + "</svg>"


def make_svgs(count: int, seed: int) -> list[str]:
    """`count` charts cycling bar, line and pie, at a few common sizes."""
    rng = random.Random(seed)
    kinds: list[Callable[[random.Random, int, int], str]] = [bar_chart, line_chart, pie_chart]
    sizes = [(640, 480), (800, 600), (720, 540)]
    return [kinds[i % 3](rng, *rng.choice(sizes)) for i in range(count)]


Runner = Callable[[Sequence[str]], None]


def timed(run: Runner, svgs: Sequence[str]) -> float:
    start = time.perf_counter()
    run(svgs)
    return time.perf_counter() - start


def in_process_runner(warm_up: str) -> Runner:
    """Renders SVGs with `cairosvg.svg2png` in this process (one core)."""
    import cairosvg

    cairosvg.svg2png(bytestring=warm_up.encode())  # fonts and caches, as the workers warm up

    def run(svgs: Sequence[str]) -> None:
        for svg in svgs:
            cairosvg.svg2png(bytestring=svg.encode())

    return run


def sandbox_runner(renderer: Renderer, warm_up: Sequence[str]) -> Runner:
    """Renders SVGs through a warm pool (start-up excluded, as in a stage)."""

    def run(svgs: Sequence[str]) -> None:
        results = renderer.render_many([(f"chart-{i}", svg) for i, svg in enumerate(svgs)])
        failed = [result.detail for result in results if not result.ok]
        if failed:
            raise SystemExit(f"{len(failed)} benchmark charts failed, e.g. {failed[0]}")

    run(warm_up)  # start and warm every worker
    return run


def measure(
    svgs: Sequence[str], workers: int, passes: int, chunk: int = 40
) -> list[tuple[str, int, float, float]]:
    """(name, cores, svgs/s, median per-core ratio to in-process) per renderer.

    The renderers take turns on each chunk of `chunk` SVGs, so drift in the machine's speed
    (large on a shared VM) hits them alike; the ratio is the median over every chunk of every
    pass, the rate is total SVGs over total seconds.
    """
    from mmzero_runtime.render import Renderer
    from mmzero_runtime.spec import ImageSpec, RenderSpec

    counts = sorted({1, workers})
    renderers = [Renderer(RenderSpec(workers=n), ImageSpec()) for n in counts]
    try:
        runners = [("in-process cairosvg.svg2png", 1, in_process_runner(svgs[0]))]
        for n, renderer in zip(counts, renderers, strict=True):
            run = sandbox_runner(renderer, svgs[: 2 * n])
            runners.append((f"sandbox Renderer, {n} worker(s)", n, run))
        chunks = [svgs[i : i + chunk] for i in range(0, len(svgs), chunk)] * passes
        seconds = [[timed(run, part) for _, _, run in runners] for part in chunks]
    finally:
        for renderer in renderers:
            renderer.close()
    rows = []
    for k, (name, cores, _) in enumerate(runners):
        rate = len(svgs) * passes / sum(times[k] for times in seconds)
        ratio = statistics.median(times[0] / times[k] / cores for times in seconds)
        rows.append((name, cores, rate, ratio))
    return rows


def _spin(loops: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(loops):
        total += i * i
    return time.perf_counter() - start


def effective_cores(processes: int, loops: int = 5_000_000) -> float:
    """How many cores' worth of CPU-bound work `processes` processes really get on this machine."""
    import multiprocessing

    alone = min(_spin(loops) for _ in range(2))
    with multiprocessing.get_context("forkserver").Pool(processes) as pool:
        start = time.perf_counter()
        pool.map(_spin, [loops] * processes)
        together = time.perf_counter() - start
    return processes * alone / together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=240, help="charts to render (>= 200)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=3, help="timed passes over all charts")
    args = parser.parse_args()
    svgs = make_svgs(args.count, args.seed)
    rows = measure(svgs, args.workers, args.passes)
    print(f"{args.count} chart SVGs (bar/line/pie with labels), seed {args.seed}, ", end="")
    print(f"{args.passes} passes; renderers take turns on each chunk of 40")
    if args.workers > 1:
        cores = effective_cores(args.workers)
        print(f"{args.workers} CPU-bound processes get {cores:.2f} cores' worth of work here")
    print()
    print("| renderer | cores used | svgs/s | svgs/s per core | per core vs in-process |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, cores, rate, ratio in rows:
        print(f"| {name} | {cores} | {rate:.1f} | {rate / cores:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
