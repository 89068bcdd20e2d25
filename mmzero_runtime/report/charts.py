"""Small inline SVG line charts for the report: no JavaScript, no plotting library, one file."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1")
WIDTH, HEIGHT, PAD = 360, 180, 36


def _ticks(low: float, high: float) -> list[float]:
    span = high - low
    return [low + span * i / 4 for i in range(5)]


def line_chart(title: str, series: Mapping[str, Sequence[float]], *, x_label: str = "step") -> str:
    """An SVG chart of one or more series against their index (1, 2, ...)."""
    values = [v for points in series.values() for v in points]
    if not values:
        return f'<div class="chart empty">{html.escape(title)}: no data</div>'
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    longest = max(len(points) for points in series.values())

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(longest - 1, 1))

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v - low) / (high - low)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="10">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="14" text-anchor="middle" font-size="12">'
        f"{html.escape(title)}</text>",
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{html.escape(x_label)}</text>",
    ]
    for tick in _ticks(low, high):
        parts.append(
            f'<text x="{PAD - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
        parts.append(
            f'<line x1="{PAD}" y1="{y(tick):.1f}" x2="{WIDTH - PAD}" y2="{y(tick):.1f}" '
            'stroke="#eee"/>'
        )
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points))
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for i, v in enumerate(points):
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>')
        parts.append(
            f'<text x="{PAD + 4 + 110 * n}" y="28" fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
