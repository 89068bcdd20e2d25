"""Benchmark files of the evaluation stage (JSON Lines, Parquet), read by `load_benchmark` as the
stage reads them: a fault of the whole file is one StageError or StoreError naming the file; a
fault of a row sets that row aside with its number and the field, and the other rows are kept.
Seeded corpus: tests/data/bad-input/benchmark/."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import fuzzing
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.spec import BenchmarkSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.kinds.benchmarks import Benchmark, load_benchmark
from mmzero_runtime.storage.errors import StoreError

pytestmark = pytest.mark.fuzz

SEEDS = fuzzing.CORPUS / "benchmark"
RED = (SEEDS / "red.png").read_bytes()
FIELDS = ("question:", "answer:", "image:", "choices:", "id:")

_IMAGES = st.sampled_from(
    ["red.png", "bomb.png", "absent.png", "", ".", "..", "/dev/null", "red.png\x00", "~x/y.png"]
) | st.sampled_from([{"bytes": None, "path": "red.png"}, {"bytes": 7}, {}, [], 3.5, None])
_VALUES = fuzzing.YAML_VALUES
ROWS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "question": st.text(max_size=12) | _VALUES,
            "answer": st.sampled_from(["red", "A", "b", ""]) | _VALUES,
            "image": _IMAGES,
            "choices": st.lists(st.text(max_size=6), max_size=30) | _VALUES,
            "id": st.sampled_from(["q1", "q2"]) | _VALUES,
        },
    ),
    max_size=6,
)


def _load(path: Path) -> Benchmark | None:
    """The benchmark, or None when it was refused as a whole by the rule."""
    fuzzing.TRIED["benchmark"] += 1
    try:
        with fuzzing.bounded(f"load_benchmark {path}"):
            return load_benchmark(BenchmarkSpec(name="b", path=str(path)), Path)
    except (StageError, StoreError) as error:
        message = str(error)
        assert str(path) in message and "\n" not in message, message
        return None


def _check_set_aside(bench: Benchmark, rows: int | None) -> None:
    for invalid in bench.invalid:
        assert invalid["error"].startswith(FIELDS) and "\n" not in invalid["error"], invalid
    if rows is not None:
        assert len(bench.items) + len(bench.invalid) == rows


def _directory(tmp: Path) -> Path:
    for image in ("red.png", "bomb.png"):
        shutil.copy(SEEDS / image, tmp / image)
    return tmp


@fuzzing.fuzz(scale=2)
@given(rows=ROWS)
def test_jsonl_rows_of_any_shape_are_kept_or_set_aside_by_field(rows: list[dict[str, Any]]) -> None:
    with fuzzing.scratch() as tmp:
        path = _directory(tmp) / "bench.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        bench = _load(path)
        assert bench is not None
        _check_set_aside(bench, len(rows))


@fuzzing.fuzz()
@given(data=fuzzing.mutated_bytes((SEEDS / "bad-rows.jsonl").read_bytes()))
def test_jsonl_with_bytes_flipped_or_cut_is_read_or_refused_naming_the_file(data: bytes) -> None:
    with fuzzing.scratch() as tmp:
        path = _directory(tmp) / "bench.jsonl"
        path.write_bytes(data)
        bench = _load(path)
        if bench is not None:
            _check_set_aside(bench, None)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


GOOD_PARQUET = _parquet(
    pa.table({"question": ["What colour?", "Which?"], "answer": ["red", "A"],
              "image": [{"bytes": RED, "path": None}] * 2, "choices": [None, ["red", "blue"]]})
)  # fmt: skip
COLUMNS = st.fixed_dictionaries(
    {},
    optional={
        "question": st.lists(st.none() | st.text(max_size=8), min_size=2, max_size=2),
        "answer": st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=2, max_size=2),
        "image": st.lists(st.none() | st.binary(max_size=8) | st.just(RED), min_size=2, max_size=2),
        "choices": st.lists(st.none() | st.lists(st.text(max_size=4)), min_size=2, max_size=2),
        "id": st.lists(st.floats(allow_nan=True), min_size=2, max_size=2),
    },
)


@fuzzing.fuzz()
@given(data=fuzzing.mutated_bytes(GOOD_PARQUET) | COLUMNS.map(lambda c: _parquet(pa.table(c))))
def test_parquet_corrupted_or_of_any_columns_is_read_or_refused_naming_the_file(
    data: bytes,
) -> None:
    with fuzzing.scratch() as tmp:
        path = tmp / "bench.parquet"
        path.write_bytes(data)
        bench = _load(path)
        if bench is not None:
            _check_set_aside(bench, None)


WHOLE_FILE = [
    # half a Parquet file: no footer (was a pyarrow ArrowInvalid traceback)
    ("truncated.parquet", "not a readable Parquet file"),
    # a CSV named .parquet
    ("not-parquet.parquet", "not a readable Parquet file"),
    ("empty.parquet", "not a readable Parquet file"),
    # a latin-1 byte in a JSON line
    ("not-utf8.jsonl", "line 1: not JSON"),
    # 5000 nested brackets: json's recursion ran out (was a RecursionError traceback)
    ("deep-nesting.jsonl", "line 1: nested too deeply"),
    # a line that is a JSON list, not an object
    ("row-not-object.jsonl", "line 2: expected an object, got list"),
]


@pytest.mark.parametrize(("name", "phrase"), WHOLE_FILE, ids=[n for n, _ in WHOLE_FILE])
def test_seeded_benchmark_file_is_refused_naming_the_file(name: str, phrase: str) -> None:
    with pytest.raises((StageError, StoreError)) as refused:
        load_benchmark(BenchmarkSpec(name="b", path=str(SEEDS / name)), Path)
    message = str(refused.value)
    assert str(SEEDS / name) in message and phrase in message and "\n" not in message, message


def test_seeded_bad_rows_are_set_aside_each_naming_its_field() -> None:
    bench = load_benchmark(BenchmarkSpec(name="b", path=str(SEEDS / "bad-rows.jsonl")), Path)
    assert [item.id for item in bench.items] == ["good"]
    reasons = {row["row"]: row["error"] for row in bench.invalid}
    assert reasons == {
        2: "choices: expected a list of options, got int",  # was a TypeError traceback
        3: "choices: expected a list of options, got str",  # was split into letters
        4: "choices: expected a list of options, got dict",  # was its keys
        # a PNG whose header claims 100000 x 100000 (was a DecompressionBombError traceback)
        5: "image: not a readable image (DecompressionBombError: Image size (10000000000 pixels) "
        "exceeds limit of 178956970 pixels, could be decompression bomb DOS attack.)",
        6: "image: not an image (no format recognised)",
        7: "image: cannot read '.' (Is a directory)",
        8: "image: cannot read 'absent.png' (No such file or directory)",
        9: "image: cannot read 'red\\x00.png' (embedded null byte)",
        10: "image: missing (a path relative to the file, or the image's bytes)",
        11: "image: missing (a path relative to the file, or the image's bytes)",
        12: "question: missing or empty",
        13: "question: missing or empty",
        14: "answer: missing or empty",
        15: "answer: 'Z' is neither an option's letter nor its text",
        16: "id: 'good' appears twice",
    }
