"""Shared parts of the bad-input harness: the CLI driven in-process, the rule every refusal
keeps, the bound on each call, and the strategies that make bad inputs from good ones.

The rule: a bad input ends in exit status 1 or 2 with one `error: ...` message on stderr that
names the file, item or field (a run spec with several wrong fields lists them on indented
lines under it), never a traceback, never past HANG_SECONDS, never a partial write.
"""

from __future__ import annotations

import copy
import io
import os
import re
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "run.yaml"
CORPUS = ROOT / "tests" / "data" / "bad-input"
PROFILE_ENV = "MMZERO_FUZZ_PROFILE"
PROFILE_NAME = os.environ.get(PROFILE_ENV, "fuzz-ci")
HANG_SECONDS = 30.0
"""The bound on one call: generous for a loaded 2-core machine (the first call of a command
imports torch), far below a hang."""

FIRST_LINE = re.compile(r"^(error|mmzero[\w -]*: error): \S")
"""Our own refusals say `error: `, argparse's `mmzero <command>: error: `."""

TRIED: Counter[str] = Counter()
"""Inputs tried per entry point in this session (conftest prints them at the end)."""


def fuzz(scale: float = 1.0) -> settings:
    """The chosen profile, with `scale` times its examples (cheap entry points try more)."""
    profile = settings.get_profile(PROFILE_NAME)
    return settings(profile, max_examples=max(1, int(profile.max_examples * scale)))


class Hang(BaseException):
    """A call ran past HANG_SECONDS (a BaseException: no `except Exception` swallows it)."""


@contextmanager
def bounded(what: str, seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail with Hang when the block runs longer than `seconds` (SIGALRM: main thread only)."""

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"{what} ran past {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Outcome:
    """What one `mmzero` call did: its exit status and what it printed."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"mmzero {' '.join(self.argv)} -> {self.code}\nstderr: {self.stderr[-2000:]}"

    def assert_refused(self, *names: str) -> None:
        """Exit 1 or 2 with one message naming each of `names`, and no traceback."""
        assert self.code in (1, 2), self
        assert "Traceback" not in self.stderr, self
        lines = self.stderr.rstrip("\n").split("\n")
        assert FIRST_LINE.match(lines[0]), f"an `error:` line first: {self}"
        assert all(line.startswith("  ") for line in lines[1:]), f"one message only: {self}"
        for name in names:
            assert name in self.stderr, f"the message should name {name!r}: {self}"

    def assert_answered(self) -> None:
        """Either done (exit 0, no traceback) or refused by the rule."""
        if self.code == 0:
            assert "Traceback" not in self.stderr, self
        else:
            self.assert_refused()


def mmzero(*argv: str, entry: str | None = None) -> Outcome:
    """`mmzero ARGV` in this process: the CLI's `main`, stdout and stderr captured, bounded.
    `entry` counts the call as one input tried for that entry point."""
    from mmzero_runtime.cli import main

    if entry is not None:
        TRIED[entry] += 1
    out, err = io.StringIO(), io.StringIO()
    with bounded(f"mmzero {' '.join(argv)}"), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse: usage errors and --help
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    return Outcome(tuple(argv), code, out.getvalue(), err.getvalue())


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory for one example (hypothesis reruns a test body many times)."""
    with tempfile.TemporaryDirectory(prefix="mmzero-fuzz-") as directory:
        yield Path(directory)


def files_under(directory: Path) -> list[str]:
    """Every file below `directory` (none when it does not exist): what a refusal must not
    have written."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# Strategies ------------------------------------------------------------------------------------

NASTY_FRAGMENTS: tuple[bytes, ...] = (
    b"\xff\xfe",  # a UTF-16 byte order mark: not UTF-8
    b"\xe9",  # latin-1 e-acute
    b"\x00",  # NUL: no YAML reader accepts it
    b"\t",  # a tab where YAML wants spaces
    b"&a [*a, *a]",  # an anchor and aliases
    b"*nowhere",  # an alias of no anchor
    b"!!python/object/apply:os.system ['true']",  # a tag safe_load refuses
    b"!!binary |\n  not base64!",
    b"!!timestamp 2026-13-45",
    b"2026-13-45",  # looks like a date, is no date
    b"9" * 5000,  # an integer past Python's digit limit
    b"1e999",
    b"<<: *x",
    b"\n---\n",  # a second document
    b"? [complex, key]\n: value",
    b"{",
    b"]",
    b"%YAML 9.9\n",
    b"\xef\xbb\xbf",  # a UTF-8 byte order mark in the middle
    b"\r",
    b'"\\ud800"',  # a lone surrogate escape
    b"[" * 3000,  # nesting past the recursion limit
    b"a:\n" + b"  " * 200 + b"b: 1",
)

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
    | st.sampled_from(["", "mmzero.dev/v1alpha1", "MMZeroRun", "builtin:tiny", "~nobody/x"])
)
YAML_VALUES: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=10,
)  # fmt: skip
"""Any value a YAML or JSON document can hold."""


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` with a few byte-level edits: flips, cuts, insertions, nasty fragments."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "cut", "insert", "fragment", "truncate"])):
            case "flip" if at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "cut":
                del data[at : at + draw(st.integers(1, 64))]
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            case "fragment":
                data[at:at] = draw(st.sampled_from(NASTY_FRAGMENTS))
            case _:
                del data[at:]
    return bytes(data)


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every value below `node`, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        yield node, key
        if isinstance(value, dict | list):
            yield from _slots(value)


@st.composite
def edited_document(draw: st.DrawFn, base: Any) -> Any:
    """`base` (a parsed document) with a few fields replaced, removed or added."""
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(document)) if isinstance(document, dict | list) else []
        if not slots or draw(st.integers(0, 19)) == 0:
            return draw(YAML_VALUES)  # the whole document is something else
        container, key = draw(st.sampled_from(slots))
        match draw(st.sampled_from(["replace", "remove", "add"])):
            case "replace":
                container[key] = draw(YAML_VALUES)
            case "remove":
                del container[key]
            case _ if isinstance(container, dict):
                container[draw(st.text(max_size=12))] = draw(YAML_VALUES)
            case _:
                container.append(draw(YAML_VALUES))
    return document
