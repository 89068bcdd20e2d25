"""User-supplied benchmark files for the evaluation stage: read, checked, asked and graded.

A benchmark is a JSON Lines or Parquet file in the usual local layout (one row per question:
`question`, `answer`, `image`, optional `choices` and `id`; `BenchmarkSpec` documents it). Its
sha256 is recorded (and checked against `sha256` when the spec gives one); each image's sha256
goes into its prediction row. A bad row (a field missing, an image that does not decode, a
multiple-choice answer that is not one of the choices) is set aside with its row number and
why, and the other rows are graded. Free-form answers are graded exactly as the training
reward grades them (`rewards.answers.grade_either_way` over the grader pool); multiple choice by
the letter the response chose. An optional judge (`evaluation.judge`, an OpenAI-compatible
server) may turn a free-form answer the grader marks wrong into a correct one; every such row
keeps the grader's outcome and the judge's verdict, and the summary names the judge.
"""

from __future__ import annotations

import hashlib
import io
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmzero_runtime.generation.base import GenerationRequest
from mmzero_runtime.rewards.answers import grade_either_way, quick_grade
from mmzero_runtime.rewards.grading import Grader, GradeRequest, GradeTable
from mmzero_runtime.roles.chat import text_part, user_turn
from mmzero_runtime.spec import BenchmarkSpec, SamplingSpec
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.storage.manifest import sha256_file
from mmzero_runtime.storage.records import parse_jsonl

LETTERS = string.ascii_uppercase
MC_INSTRUCTION = "Answer with the letter of the correct option."
_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.:)]?(?:\s.*)?$", re.DOTALL)


@dataclass(frozen=True)
class BenchmarkItem:
    """One question of a benchmark, ready to ask: for multiple choice the options are in the
    question and the answer is their letter."""

    id: str
    question: str
    answer: str
    image: bytes
    choices: tuple[str, ...] = ()

    @property
    def image_sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


@dataclass(frozen=True)
class Benchmark:
    """A benchmark file as read: its checksum, the usable items and the rows set aside."""

    name: str
    source: str
    sha256: str
    items: list[BenchmarkItem]
    invalid: list[dict[str, Any]] = field(default_factory=list)


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError, ValueError) as error:  # truncated, not Parquet
            detail = " ".join(str(error).split())
            raise StageError(
                f"benchmark {path}: not a readable Parquet file ({detail}); write it again, "
                "e.g. with pyarrow.parquet.write_table"
            ) from None
        return rows
    if path.suffix in (".jsonl", ".json"):
        return [dict(row) for row in parse_jsonl(path.read_bytes(), str(path))]
    raise StageError(f"benchmark {path}: unknown format {path.suffix!r}; use .jsonl or .parquet")


def _image_bytes(value: Any, directory: Path) -> bytes:
    """The image of a row: bytes, `{bytes, path}` (Hugging Face datasets), or a relative path."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str) and value:
        try:
            data = (directory / value).read_bytes()
        except (OSError, ValueError) as error:  # missing, a directory, a NUL in the name
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise ValueError(f"image: cannot read {value!r} ({reason})") from None
    else:
        raise ValueError("image: missing (a path relative to the file, or the image's bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()  # raises on a file that is not an image
    except UnidentifiedImageError:
        raise ValueError("image: not an image (no format recognised)") from None
    except Exception as error:  # a decoder of untrusted bytes: bombs, truncation, bad chunks
        detail = " ".join(str(error).split())
        raise ValueError(
            f"image: not a readable image ({type(error).__name__}: {detail})"
        ) from None
    return data


def multiple_choice(question: str, choices: Sequence[str]) -> str:
    """The question with its lettered options, as the Solver is asked it.

    >>> print(multiple_choice("Which colour?", ["red", "blue"]))
    Which colour?
    A. red
    B. blue
    Answer with the letter of the correct option.
    """
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
    return f"{question}\n{options}\n{MC_INSTRUCTION}"


def chosen_letter(answer: str | None, choices: Sequence[str]) -> str | None:
    """The option a multiple-choice answer picks: its letter (`B`, `(b)`, `B. 42`) or the text of
    an option; None when it picks none.

    >>> [chosen_letter(a, ["x", "y"]) for a in ("(b)", " Y ", "B. y", "z")]
    ['B', 'B', 'B', None]
    """
    if answer is None:
        return None
    text = answer.strip()
    folded = [c.strip().casefold() for c in choices]
    if text.casefold() in folded:
        return LETTERS[folded.index(text.casefold())]
    match = _LETTER.match(text)
    if match and match.group(1).upper() in LETTERS[: len(choices)]:
        return match.group(1).upper()
    return None


def _item(name: str, number: int, row: dict[str, Any], directory: Path) -> BenchmarkItem:
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question: missing or empty")
    if answer is None or not str(answer).strip():
        raise ValueError("answer: missing or empty")
    image = _image_bytes(row.get("image"), directory)
    listed = row.get("choices")
    if listed is not None and not isinstance(listed, list | tuple):
        raise ValueError(f"choices: expected a list of options, got {type(listed).__name__}")
    choices = tuple(str(c) for c in listed or ())
    item_id = str(row.get("id") or f"{name}-{number}")
    if not choices:
        return BenchmarkItem(item_id, question, str(answer).strip(), image)
    if len(choices) > len(LETTERS):
        raise ValueError(f"choices: {len(choices)} options, at most {len(LETTERS)}")
    letter = chosen_letter(str(answer), choices)
    if letter is None:
        raise ValueError(f"answer: {answer!r} is neither an option's letter nor its text")
    return BenchmarkItem(item_id, multiple_choice(question, choices), letter, image, choices)


def load_benchmark(spec: BenchmarkSpec, resolve: Callable[[str], Path]) -> Benchmark:
    """Read a benchmark file; `resolve` turns `spec.path` into a local file."""
    path = resolve(spec.path)
    if not path.is_file():
        raise StageError(
            f"benchmark {spec.name}: {spec.path} is not a file here; give a path the stage can "
            "read (a mounted volume on a cluster) or store:<key> for a file in the run's store"
        )
    digest = sha256_file(path)
    if spec.sha256 is not None and digest != spec.sha256:
        raise StageError(
            f"benchmark {spec.name}: {spec.path} has sha256 {digest}, not the spec's "
            f"{spec.sha256}; the file changed: restore it, or update evaluation.benchmarks"
        )
    items, invalid, seen = [], [], set()
    for number, row in enumerate(_rows(path)[: spec.limit], start=1):
        try:
            item = _item(spec.name, number, row, path.parent)
            if item.id in seen:
                raise ValueError(f"id: {item.id!r} appears twice")
        except (ValueError, OSError) as error:  # OSError: an image path that cannot be read
            invalid.append({"row": number, "error": str(error)})
            continue
        seen.add(item.id)
        items.append(item)
    return Benchmark(spec.name, spec.path, digest, items, invalid)


def grade_benchmark(
    grader: Grader, items: Sequence[BenchmarkItem], answers: Sequence[str | None]
) -> tuple[list[str], list[Any]]:
    """The outcome of each answer (`correct`, `wrong` or a grading failure) and the grader's
    results (for the stage's failure ledger)."""
    requests = [
        GradeRequest(item.id, answer, item.answer)
        for item, answer in zip(items, answers, strict=True)
        if not item.choices and answer is not None and quick_grade(answer, item.answer) is None
    ]
    graded = grader.grade(requests)
    table = GradeTable(graded)
    outcomes = []
    for item, answer in zip(items, answers, strict=True):
        if item.choices:
            outcomes.append("correct" if chosen_letter(answer, item.choices) == item.answer
                            else "wrong")  # fmt: skip
        else:
            outcomes.append(grade_either_way(answer, item.answer, table))
    return outcomes, graded


def describe(benchmark: Benchmark) -> dict[str, Any]:
    """What the results record of the file: where it was, its sha256, how many rows served."""
    return {
        "source": benchmark.source,
        "sha256": benchmark.sha256,
        "items": len(benchmark.items),
        "invalid_rows": benchmark.invalid,
    }


JUDGE_PROMPT = (
    "You check an answer to a question about a picture.\nQuestion: {question}\n"
    "Reference answer: {reference}\nGiven answer: {answer}\n"
    "Does the given answer mean the same as the reference answer? Reply with one word: yes or no."
)
JUDGE_SAMPLING = SamplingSpec(temperature=0.0, max_tokens=8)
"""Greedy and short: the judge answers one word."""


def judge_requests(
    items: Sequence[BenchmarkItem],
    answers: Sequence[str | None],
    outcomes: Sequence[str],
    seed: int,
) -> list[GenerationRequest]:
    """Judge requests for the free-form answers the grader marked wrong, ids `judge/<item>`."""
    requests = []
    for item, answer, outcome in zip(items, answers, outcomes, strict=True):
        if item.choices or answer is None or outcome != "wrong":
            continue
        prompt = JUDGE_PROMPT.format(question=item.question, reference=item.answer, answer=answer)
        messages = user_turn(text_part(prompt))
        requests.append(
            GenerationRequest(f"judge/{item.id}", messages, (), 1, JUDGE_SAMPLING, seed)
        )
    return requests


def verdict(reply: str) -> str:
    """`yes`, `no` or `unclear` from the judge's reply.

    >>> verdict(" Yes."), verdict("no, because"), verdict("maybe")
    ('yes', 'no', 'unclear')
    """
    words = re.findall(r"[a-z]+", reply.casefold())
    return words[0] if words and words[0] in ("yes", "no") else "unclear"
