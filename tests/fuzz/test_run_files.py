"""Run files, as `mmzero spec validate`, `plan`, `run` and `stage` read them: any bytes, the
example with bytes flipped or cut, the example with fields replaced, removed or added, and the
seeded corpus in tests/data/bad-input/run-file/. Each is accepted or refused by the rule of
fuzzing.py, and a refused run writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import fuzzing
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.fuzz

EXAMPLE_BYTES = fuzzing.EXAMPLE.read_bytes()
EXAMPLE_DOCUMENT = yaml.safe_load(EXAMPLE_BYTES)
SEEDS = fuzzing.CORPUS / "run-file"


def _commands(path: Path, run_dir: Path) -> list[tuple[str, ...]]:
    """Every command that reads a run file, as a user types it."""
    where = ("--run-dir", str(run_dir), "--device", "cpu")
    return [
        ("spec", "validate", str(path)),
        ("plan", str(path)),
        ("run", str(path), *where),
        ("stage", "propose", "--spec", str(path), "--iteration", "1", *where),
    ]


def _check_run_file(data: bytes) -> None:
    """Valid: `validate` says ok and `plan` answers. Invalid: every command refuses, naming the
    file, and the run directory is never made."""
    with fuzzing.scratch() as tmp:
        path = tmp / "run.yaml"
        path.write_bytes(data)
        run_dir = tmp / "runs" / "r"
        validate, *others = _commands(path, run_dir)
        checked = fuzzing.mmzero(*validate, entry="run-file")
        if checked.code == 0:
            assert "ok (run " in checked.stdout, checked
            fuzzing.mmzero("plan", str(path)).assert_answered()
            return
        checked.assert_refused(str(path))
        for argv in others:  # never a valid file here: `run` and `stage` would start working
            fuzzing.mmzero(*argv).assert_refused(str(path))
        assert not run_dir.parent.exists(), fuzzing.files_under(run_dir.parent)


@fuzzing.fuzz(scale=2)
@given(data=st.binary(max_size=512) | st.text(max_size=256).map(str.encode))
def test_run_file_of_random_bytes_is_refused_naming_the_file(data: bytes) -> None:
    _check_run_file(data)


@fuzzing.fuzz(scale=2)
@given(data=fuzzing.mutated_bytes(EXAMPLE_BYTES))
def test_run_file_with_bytes_flipped_or_cut_is_refused_or_valid(data: bytes) -> None:
    _check_run_file(data)


@fuzzing.fuzz(scale=2)
@given(document=fuzzing.edited_document(EXAMPLE_DOCUMENT), as_json=st.booleans())
def test_run_file_with_fields_edited_is_refused_naming_the_field_or_valid(
    document: Any, as_json: bool
) -> None:
    text = json.dumps(document) if as_json else yaml.safe_dump(document, allow_unicode=True)
    _check_run_file(text.encode())


SEEDED = [
    # the case: a latin-1 comment; was a UnicodeDecodeError traceback
    ("not-utf8.yaml", "not UTF-8 text (byte 73: b'\\xe9'); save the run file as UTF-8"),
    # the example saved as UTF-16 (a Windows editor's "Unicode")
    ("utf16.yaml", "not UTF-8"),
    # a YAML list, not a mapping
    ("list.yaml", "expected a mapping with apiVersion, kind, metadata and spec, got list"),
    # nothing at all
    ("empty.yaml", "got an empty document"),
    # `kubectl apply` refuses an object without a name, so the run file does too
    ("no-metadata.yaml", "metadata: missing; a run file names its run"),
    ("metadata-without-name.yaml", "metadata.name: missing"),
    # PyYAML's several-line report, made one line with its position
    ("tab-indented.yaml", "not valid YAML at line 6, column 1: while scanning for the next"),
    ("unclosed-bracket.yaml", "at line 8, column 13: while parsing a flow sequence, expected"),
    # 600 open brackets: PyYAML's recursion ran out (was a RecursionError traceback)
    ("deep-nesting.yaml", "nested too deeply"),
    # 5000 digits: past Python's limit for int() (was a ValueError traceback)
    ("huge-integer.yaml", "a value cannot be read"),
    # an implicit timestamp that is no date (was a ValueError traceback)
    ("impossible-date.yaml", "month must be in 1..12"),
    # an explicit timestamp tag on a word: PyYAML's own AttributeError (found by `make fuzz`)
    ("timestamp-tag-on-a-word.yaml", "a value cannot be read ('NoneType' object has no attr"),
    # a tag that safe_load refuses to construct
    ("python-tag.yaml", "could not determine a constructor"),
    ("nul-byte.yaml", "unacceptable character #x0000"),
    ("two-documents.yaml", "expected a single document in the stream, but found another"),
    ("wrong-kind.yaml", "kind: got 'Deployment'"),
    ("null-spec.yaml", "spec: got None"),
    # a 20,000-character name: shown cut, the message stays one short line
    ("long-value.yaml", "metadata.name: got 'xxxxxxxxxxxx"),
    # a key with a newline: shown quoted, so the message keeps one line per field
    ("newline-in-key.yaml", "spec.'itera\\ntions': unknown field"),
    # a billion laughs in metadata.labels (which the model allows) and in a field: each
    # would have hung `mmzero run` (pinning dumps the labels) or the error message (repr)
    ("alias-bomb.yaml", "remove the anchors (&) and aliases (*) that repeat"),
    ("alias-bomb-in-field.yaml", "more than 100000 values once its YAML aliases are expanded"),
]


USABLE_NOWHERE = "model-in-an-unknown-home.yaml"
"""Valid, but its model is under the home of a user this machine does not have (`~nobody9/`):
was a RuntimeError traceback from Path.expanduser in `plan` and `run`."""


def test_seeded_corpus_covers_every_file() -> None:
    names = sorted([*(name for name, _ in SEEDED), USABLE_NOWHERE])
    assert names == sorted(p.name for p in SEEDS.iterdir())


def test_seeded_run_file_whose_model_is_nowhere_is_planned_and_refused_by_run(
    tmp_path: Path,
) -> None:
    path = SEEDS / USABLE_NOWHERE
    planned = fuzzing.mmzero("plan", str(path), entry="run-file")
    assert (
        planned.code == 0 and "(no memory estimates: model '~nobody9/models/qwen'" in planned.stdout
    )
    run_dir = tmp_path / "runs" / "r"
    ran = fuzzing.mmzero("run", str(path), "--run-dir", str(run_dir), entry="run-file")
    ran.assert_refused(
        "model '~nobody9/models/qwen': directory ~nobody9/models/qwen does not exist"
    )
    assert not run_dir.parent.exists()


@pytest.mark.parametrize(("name", "phrase"), SEEDED, ids=[name for name, _ in SEEDED])
def test_seeded_run_file_is_refused_by_every_command_with_its_remedy(
    name: str, phrase: str, tmp_path: Path
) -> None:
    path = SEEDS / name
    run_dir = tmp_path / "runs" / "r"
    for argv in _commands(path, run_dir):
        outcome = fuzzing.mmzero(*argv, entry="run-file")
        outcome.assert_refused(str(path), phrase)
        assert len(outcome.stderr) < 2000, outcome
    assert not run_dir.parent.exists()


def test_run_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").mkdir()
    for argv in _commands(tmp_path / "run.yaml", tmp_path / "runs" / "r"):
        fuzzing.mmzero(*argv).assert_refused("cannot read the run file (Is a directory)")


def test_seeded_run_files_in_a_real_process_print_one_line_and_exit_two(tmp_path: Path) -> None:
    """A handful as a user runs them: stderr is exactly what a terminal shows."""
    run_dir = tmp_path / "runs" / "r"
    for name, argv in [
        ("not-utf8.yaml", ("spec", "validate")),
        ("alias-bomb.yaml", ("plan",)),
        ("no-metadata.yaml", ("stage", "propose", "--iteration", "1", "--run-dir", str(run_dir),
                              "--spec")),
    ]:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "mmzero_runtime.cli", *argv, str(SEEDS / name)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        outcome = fuzzing.Outcome((*argv, name), done.returncode, done.stdout, done.stderr)
        outcome.assert_refused(str(SEEDS / name))
        assert outcome.code == 2, outcome
    assert not run_dir.parent.exists()
