"""Offline silver labels and the Solver-data measurements (reference §2.5, §5.5, §6, §15)."""

from __future__ import annotations

import pytest

from mmzero_runtime.filters import solver_data_filter
from mmzero_runtime.rewards.answers import text_grade
from mmzero_runtime.rewards.grading import GradeResult, GradeTable
from mmzero_runtime.rewards.labels import (
    ItemLabel,
    SolverCandidate,
    label_grade_requests,
    label_items,
)
from mmzero_runtime.spec import FiltersSpec

CONSISTENCY = FiltersSpec()
ACCURACY = FiltersSpec(easy_filter="accuracy")


def candidate(
    easy: tuple[str | None, ...] = ("3",) * 10,
    hard: tuple[str | None, ...] = ("a",) * 5 + ("b",) * 5,
) -> SolverCandidate:
    """An item with K = 10 answers per question and Proposer easy answer "3"."""
    return SolverCandidate("s", "3", easy, hard)


def split(top: int, k: int = 10) -> tuple[str, ...]:
    """k answers: `top` equal ones, the rest all different (consistency top/k)."""
    return ("a",) * top + tuple(f"x{i}" for i in range(k - top))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (candidate(), ItemLabel("a", 1.0, 0.5)),  # 5-5 tie: "a" came first
        (candidate(hard=split(3)), ItemLabel("a", 1.0, 0.3, 0.2)),  # 3 of 10 agree, lead 2
        (candidate(hard=("None",) * 10), ItemLabel(None, 1.0, 0.0)),  # no vote: no label
        (candidate(hard=("none",) * 9 + ("a",)), ItemLabel("a", 1.0, 1.0, 1.0)),
        # ^ §15: the reference kept the lower-case "none" label; here the one real vote wins
        (candidate(easy=split(4)), ItemLabel("a", 0.4, 0.5)),  # easy self-consistency 4/10
        (candidate(easy=(None,) * 10), ItemLabel("a", 0.0, 0.5)),  # no easy vote: score 0
    ],
    ids=["tie", "three", "all-none", "none-lowercase", "easy-split", "easy-missing"],
)
def test_label_items_self_consistency_gives_hand_values(
    item: SolverCandidate, expected: ItemLabel
) -> None:
    assert label_items([item], spec=CONSISTENCY, grades=text_grade)["s"] == expected


def test_label_items_accuracy_mode_checks_proposer_answer() -> None:
    # Self-consistent but wrong: all 10 easy answers say "4", the Proposer said "3".
    # self_consistency scores 1.0 (kept); accuracy, the paper's test, scores 0.0 (dropped).
    item = candidate(easy=("4",) * 10)
    consistent = label_items([item], spec=CONSISTENCY, grades=text_grade)
    accurate = label_items([item], spec=ACCURACY, grades=text_grade)
    assert (consistent["s"].easy_score, accurate["s"].easy_score) == (1.0, 0.0)
    assert solver_data_filter(accurate, spec=ACCURACY).dropped == {"s": "easy_too_low"}


def test_label_items_accuracy_counts_no_box_as_wrong() -> None:
    # 6 right, 4 without a box: 6/10 (no box stays in the denominator).
    item = candidate(easy=("3",) * 6 + (None,) * 4)
    assert label_items([item], spec=ACCURACY, grades=text_grade)["s"].easy_score == 0.6


def test_label_items_accuracy_all_gradings_failed_is_unknown() -> None:
    grades = GradeTable(
        [GradeResult("s", "x", "3", "timeout"), GradeResult("s", "a", "b", "wrong")]
    )
    labels = label_items([candidate(easy=("x",) * 10)], spec=ACCURACY, grades=grades)
    assert labels["s"].easy_score is None
    assert solver_data_filter(labels, spec=ACCURACY).dropped == {"s": "easy_grading_failed"}


@pytest.mark.parametrize("spec", [CONSISTENCY, ACCURACY], ids=["consistency", "accuracy"])
def test_label_grade_requests_cover_every_lookup(spec: FiltersSpec) -> None:
    items = [candidate(easy=("3", "3.0", "4", None) * 2 + ("3", "3"), hard=split(5))]
    requests = label_grade_requests(items, spec=spec)
    grades = GradeTable(GradeResult(r.item_id, r.answer, r.reference, "wrong") for r in requests)
    label_items(items, spec=spec, grades=grades)  # raises if a lookup is missing
