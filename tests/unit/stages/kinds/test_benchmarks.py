"""Benchmark files of the evaluation stage: formats, checksums, bad rows, multiple choice."""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mmzero_runtime.spec import BenchmarkSpec, SpecError, parse_run
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.kinds.benchmarks import (
    MC_INSTRUCTION,
    chosen_letter,
    load_benchmark,
)
from mmzero_runtime.storage.manifest import sha256_file


def _png(colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_with_relative_images_free_form_and_multiple_choice(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png())
    path = _jsonl(tmp_path / "bench.jsonl", [
        {"id": "q1", "image": "img/a.png", "question": "What colour?", "answer": "red"},
        {"image": "img/a.png", "question": "Which?", "answer": "blue", "choices": ["red", "blue"]},
        {"image": "img/a.png", "question": "Which?", "answer": "C", "choices": ["x", "y", "z"]},
    ])  # fmt: skip
    bench = load_benchmark(BenchmarkSpec(name="b", path=str(path)), Path)
    assert [i.id for i in bench.items] == ["q1", "b-2", "b-3"]
    assert [i.answer for i in bench.items] == ["red", "B", "C"]
    assert bench.items[1].question.endswith(f"A. red\nB. blue\n{MC_INSTRUCTION}")
    assert bench.items[0].image == _png() and bench.sha256 == sha256_file(path)
    assert bench.invalid == []


def test_parquet_with_image_bytes_and_hugging_face_image_structs(tmp_path: Path) -> None:
    table = pa.table({
        "question": ["Q1", "Q2"],
        "answer": ["1", "2"],
        "image": [{"bytes": _png("red"), "path": None}, {"bytes": _png("blue"), "path": None}],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "b.parquet")
    bench = load_benchmark(BenchmarkSpec(name="p", path=str(tmp_path / "b.parquet")), Path)
    assert [i.answer for i in bench.items] == ["1", "2"]
    assert bench.items[1].image == _png("blue")
    plain = pa.table({"question": ["Q"], "answer": ["3"], "image": [_png()]})
    pq.write_table(plain, tmp_path / "plain.parquet")
    spec = BenchmarkSpec(name="p", path=str(tmp_path / "plain.parquet"), limit=1)
    assert load_benchmark(spec, Path).items[0].image == _png()


def test_bad_rows_are_set_aside_with_their_number_and_the_rest_served(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(_png())
    (tmp_path / "bad.png").write_bytes(b"not an image")
    path = _jsonl(tmp_path / "b.jsonl", [
        {"image": "ok.png", "question": "Q", "answer": "1"},
        {"image": "ok.png", "answer": "1"},
        {"image": "bad.png", "question": "Q", "answer": "1"},
        {"image": "missing.png", "question": "Q", "answer": "1"},
        {"image": "ok.png", "question": "Q", "answer": "maybe", "choices": ["yes", "no"]},
        {"id": "b-1", "image": "ok.png", "question": "Q", "answer": "1"},
    ])  # fmt: skip
    bench = load_benchmark(BenchmarkSpec(name="b", path=str(path)), Path)
    assert [i.id for i in bench.items] == ["b-1"]
    errors = {row["row"]: row["error"] for row in bench.invalid}
    assert sorted(errors) == [2, 3, 4, 5, 6]
    assert "question" in errors[2] and "answer" in errors[5] and "twice" in errors[6]


def test_a_changed_or_missing_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(_png())
    path = _jsonl(tmp_path / "b.jsonl", [{"image": "ok.png", "question": "Q", "answer": "1"}])
    with pytest.raises(StageError, match="the file changed"):
        load_benchmark(BenchmarkSpec(name="b", path=str(path), sha256="0" * 64), Path)
    with pytest.raises(StageError, match="store:<key>"):
        load_benchmark(BenchmarkSpec(name="b", path=str(tmp_path / "nope.jsonl")), Path)
    ok = BenchmarkSpec(name="b", path=str(path), sha256=sha256_file(path))
    assert len(load_benchmark(ok, Path).items) == 1


def test_benchmark_names_must_be_unique() -> None:
    twice = [{"name": "x", "path": "a.jsonl"}, {"name": "x", "path": "b.jsonl"}]
    with pytest.raises(SpecError, match="more than once"):
        parse_run({"spec": {"evaluation": {"benchmarks": twice}}}, "run.yaml")


@given(st.lists(st.text(string.ascii_lowercase + " ", min_size=2, max_size=8).map(str.strip)
                .filter(lambda t: len(t) > 1), min_size=2, max_size=6, unique=True),
       st.data())  # fmt: skip
def test_an_answer_picks_its_option_by_letter_or_by_text(choices: list[str], data) -> None:  # type: ignore[no-untyped-def]
    index = data.draw(st.integers(0, len(choices) - 1))
    letter = string.ascii_uppercase[index]
    for answer in (letter, letter.lower(), f"({letter})", f"{letter}. {choices[index]}"):
        assert chosen_letter(answer, choices) == letter, answer
    assert chosen_letter(choices[index].upper(), choices) == letter
    assert chosen_letter(None, choices) is None
