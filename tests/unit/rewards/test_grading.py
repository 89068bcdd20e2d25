"""Grade lookups and the in-process part of the grader (no worker pool needed)."""

from __future__ import annotations

import pytest

from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import (
    MAX_ANSWER_CHARS,
    Grader,
    GradeRequest,
    GradeResult,
    GradeTable,
    pair_key,
)
from mmzero_runtime.spec import GradingSpec


def test_pair_key_either_order_same_key() -> None:
    assert pair_key("1/2", " 0.5") == pair_key("0.5", "1/2") == ("0.5", "1/2")


def test_grade_table_reversed_pair_finds_outcome() -> None:
    grades = GradeTable([GradeResult("q", "0.5", "1/2", "correct")])
    assert grades("1/2", "0.5") == "correct"


def test_grade_table_missing_pair_raises_naming_answers() -> None:
    with pytest.raises(RewardError, match=r"no grade for answer '3' against '4'.*grade_requests"):
        GradeTable([])("3", "4")


@pytest.mark.parametrize(
    ("answer", "reference", "outcome"),
    [
        ("Blue whale", "blue  whale", "correct"),  # normalised text: settled in-process
        ("None", "3", "wrong"),  # a non-answer never matches
        ("1" * (MAX_ANSWER_CHARS + 1), "1", "rejected"),  # over-long input never reaches sympy
    ],
    ids=["text", "non-answer", "too-long"],
)
def test_grader_settled_pairs_need_no_worker(answer: str, reference: str, outcome: str) -> None:
    with Grader(GradingSpec()) as grader:
        (result,) = grader.grade([GradeRequest("q1", answer, reference)])
    assert (result.item_id, result.outcome) == ("q1", outcome)


def test_grader_repeated_pair_keeps_each_request_item() -> None:
    requests = [GradeRequest("a", "x", "X"), GradeRequest("b", "X", "x")]
    with Grader(GradingSpec()) as grader:
        results = grader.grade(requests)
    assert [(r.item_id, r.outcome) for r in results] == [("a", "correct"), ("b", "correct")]


@pytest.mark.parametrize(
    ("answer", "reference", "outcome"),
    [
        ("\\frac{1}{2}", "0.5", "correct"),  # a fraction equals its decimal
        ("3", "3.0", "correct"),  # integer equals float
        ("4", "5", "wrong"),  # different numbers
    ],
    ids=["fraction-decimal", "int-float", "different"],
)
def test_grader_math_verify_option_grades_like_mathruler(
    answer: str, reference: str, outcome: str
) -> None:
    with Grader(GradingSpec(grader="math_verify")) as grader:
        (result,) = grader.grade([GradeRequest("q1", answer, reference)])
    assert result.outcome == outcome, result.detail
