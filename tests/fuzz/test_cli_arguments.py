"""Command lines: every `mmzero` command that reads what a user names (not `serve`, which
listens until stopped, `init-tiny`, which builds a model for minutes, or `status NAME`, which
asks a cluster) with options and values of any kind, among them paths to missing files,
directories and bad run files (never a valid one, so no run starts). Each ends in exit 0 or by
the rule of fuzzing.py. Seeded corpus: tests/data/bad-input/cli-args/argv.txt."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import fuzzing
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

pytestmark = pytest.mark.fuzz

SEEDS = fuzzing.CORPUS / "cli-args" / "argv.txt"
BAD_RUN_FILE = fuzzing.CORPUS / "run-file" / "list.yaml"
COMMANDS = st.sampled_from(
    [[], ["bogus"], ["spec"], ["spec", "validate"], ["spec", "schema"], ["spec", "docs"],
     ["plan"], ["run"], ["stage"], ["stage", "propose"], ["stage", "solver-grpo"], ["import"],
     ["export"], ["report"], ["render"], ["-v", "plan"]]
)  # fmt: skip
OPTIONS = st.sampled_from(
    ["--spec", "--run-dir", "--iteration", "--iterations", "--shards", "--shard", "--device",
     "--until", "--role", "--digest-file", "--calibrate", "--write", "--help", "-v", "--", "-"]
)  # fmt: skip
ARGV_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
VALUES = st.sampled_from(
    ["-1", "0", "1", "2", "99999999999999999999", "1e3", "nan", "", "x", "é", "cpu", "cuda",
     "auto", "solver", "propose", "evaluate", "builtin:tiny", "\udcff.yaml"]
) | st.text(ARGV_TEXT, max_size=8)  # fmt: skip
"""Values as argv can hold them: never a NUL (the OS refuses it), and of the surrogates only
those Python decodes a non-UTF-8 byte to (U+DCFF for the byte 0xff)."""
PATHS = st.sampled_from(["absent.yaml", ".", "bad.yaml", "not-utf8.yaml", "model", "out"])
"""Names in the example's scratch directory."""


def _scratch_files(tmp: Path) -> None:
    shutil.copy(BAD_RUN_FILE, tmp / "bad.yaml")
    shutil.copy(fuzzing.CORPUS / "run-file" / "not-utf8.yaml", tmp / "not-utf8.yaml")
    shutil.copytree(fuzzing.CORPUS / "model-dir" / "config-list", tmp / "model")


@fuzzing.fuzz(scale=3)
@given(
    command=COMMANDS,
    tokens=st.lists(OPTIONS | VALUES | PATHS.map(lambda name: f"{{tmp}}/{name}"), max_size=6),
)
def test_command_line_of_any_options_is_answered_or_refused_in_one_line(
    command: list[str], tokens: list[str]
) -> None:
    with fuzzing.scratch() as tmp:
        _scratch_files(tmp)
        argv = [*command, *(t.replace("{tmp}", str(tmp)) for t in tokens)]
        assume(not argv or argv[0] not in ("serve", "init-tiny", "status"))
        # Python 3.11's argparse gives a positional after a second `--` as an empty list (its
        # own `--` handling, not ours to fix; no user types two)
        assume(argv.count("--") < 2)
        before = fuzzing.files_under(tmp)
        fuzzing.mmzero(*argv, entry="cli-args").assert_answered()
        assert fuzzing.files_under(tmp) == before, "a command that failed or asked wrote files"


def _seeds() -> list[tuple[str, str]]:
    lines = [line for line in SEEDS.read_text().splitlines() if not line.startswith("#")]
    return [tuple(line.split(" => ", 1)) for line in lines]  # type: ignore[misc]


@pytest.mark.parametrize(("words", "phrase"), _seeds(), ids=[w or "(none)" for w, _ in _seeds()])
def test_seeded_command_line_is_refused_with_its_reason(
    words: str, phrase: str, tmp_path: Path
) -> None:
    argv = shlex.split(words.replace("{tmp}", str(tmp_path)).replace("{bad}", str(BAD_RUN_FILE)))
    outcome = fuzzing.mmzero(*argv, entry="cli-args")
    outcome.assert_refused(phrase)
    assert outcome.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == [], outcome


@pytest.mark.parametrize("name", ["0\n", "\r", "a\n  b"], ids=["newline", "return", "indent"])
def test_path_with_control_characters_is_named_escaped_in_one_line(
    name: str, tmp_path: Path
) -> None:
    """Found by `make fuzz`: a file name with a line break broke the message in two."""
    outcome = fuzzing.mmzero("spec", "validate", str(tmp_path / name), entry="cli-args")
    outcome.assert_refused("cannot read the run file (No such file or directory)")
    assert outcome.stderr.count("\n") == 1, outcome


def test_usage_error_in_a_real_process_is_one_line_exit_two() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "mmzero_runtime.cli", "stage", "propose", "--iteration", "x"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == (
        "mmzero stage: error: argument --iteration: invalid int value: 'x'; "
        "see `mmzero stage --help`\n"
    )
