"""Figures that differ from run to run (wall time, memory, throughput), kept beside the artifacts.

They live in `<run>/metrics/`, outside every manifest, so the same seed and spec still give the
same artifact bytes: `<stage>.steps.jsonl` gets one row per training step, and `<stage>.json`
the stage's totals once it is done, `<stage>.prom` its Prometheus metrics as they ended (what a
scrape of a pod that is gone would have read). The report reads both; on a cluster they are what the
stage's metrics endpoint serves last.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

from mmzero_runtime.storage.store import ArtifactStore

METRICS_DIR = "metrics"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident memory now (Linux `/proc/self/statm`; peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The most resident memory this process has used."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _directory(root: Path) -> Path:
    path = root / METRICS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def append_step(root: Path, stage: str, step: int, figures: dict[str, float]) -> None:
    """Add one training step's volatile figures to `<run>/metrics/<stage>.steps.jsonl`."""
    row = json.dumps({"step": step, **figures}, sort_keys=True)
    with (_directory(root) / f"{stage}.steps.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(row + "\n")


def _replace(root: Path, name: str, data: bytes) -> None:
    """Write `<run>/metrics/<name>` whole, replacing an earlier attempt's."""
    path = _directory(root) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_summary(root: Path, stage: str, figures: dict[str, Any]) -> None:
    """Write `<run>/metrics/<stage>.json`."""
    text = json.dumps({"stage": stage, **figures}, indent=1, sort_keys=True) + "\n"
    _replace(root, f"{stage}.json", text.encode())


def write_exposition(root: Path, stage: str, text: bytes) -> None:
    """Write `<run>/metrics/<stage>.prom`: the stage's Prometheus metrics as they ended."""
    _replace(root, f"{stage}.prom", text)


def publish(store: ArtifactStore, stage: str) -> None:
    """Copy the stage's metric files from `store.root` into the store (a no-op for a local one),
    so that the report of a cluster run has them too."""
    for name in (f"{stage}.json", f"{stage}.steps.jsonl", f"{stage}.prom"):
        path = store.root / METRICS_DIR / name
        if path.is_file():
            store.upload_file(f"{METRICS_DIR}/{name}", path)


def read_steps(root: Path, stage: str) -> list[dict[str, Any]]:
    """The step rows of a stage, one per step (a resumed step's last row wins), by step."""
    path = root / METRICS_DIR / f"{stage}.steps.jsonl"
    if not path.exists():
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[int(row["step"])] = row
    return [rows[step] for step in sorted(rows)]


def read_summary(root: Path, stage: str) -> dict[str, Any] | None:
    """A finished stage's totals, or None."""
    path = root / METRICS_DIR / f"{stage}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
