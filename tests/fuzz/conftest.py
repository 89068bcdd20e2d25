"""The bad-input harness (tests/fuzz): its hypothesis profiles, its helpers and its figures.

`fuzz-ci`, the default, tries a few derandomized inputs per entry point, so that the whole
folder runs in seconds inside every `pytest`. `fuzz-long` (`make fuzz`) tries many random ones.
A profile is chosen with MMZERO_FUZZ_PROFILE and applied per test (`fuzzing.fuzz`), never
loaded globally, so the rest of the suite keeps hypothesis's own defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fuzzing.py

_COMMON = {
    # The harness bounds each call itself (fuzzing.HANG_SECONDS); a per-example deadline would
    # only be flaky on a shared 2-core machine.
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile(
    "fuzz-ci", max_examples=30, derandomize=True, database=None, print_blob=True, **_COMMON
)
settings.register_profile("fuzz-long", max_examples=3000, print_blob=True, **_COMMON)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Inputs tried per entry point: the figures benchmarks/RESULTS.md records."""
    import fuzzing

    if fuzzing.TRIED:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(fuzzing.TRIED.items()))
        terminalreporter.write_line(f"bad-input search ({fuzzing.PROFILE_NAME}): {counts}")
