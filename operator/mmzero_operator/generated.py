"""The command line of the chart's generated files (the CRD, the Grafana dashboard): print the
file, or `--write` it where the chart keeps it; a test fails when the chart's copy is stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def print_or_write(text: str, what: str, chart_path: Path, argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=f"print or write the {what}")
    parser.add_argument(
        "--write", type=Path, help=f"write to this file (the chart's: {chart_path})"
    )
    args = parser.parse_args(argv)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
