"""Answer normalisation, either-way grading and the majority vote (reference §5.2, §13.12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.rewards.answers import (
    NON_ANSWERS,
    GradeOutcome,
    grade_either_way,
    majority_vote,
    normalise_answer,
    quick_grade,
    text_grade,
    vote_pairs,
)
from mmzero_runtime.rewards.grading import GradeResult, GradeTable


def table(*rows: tuple[str, str, GradeOutcome]) -> GradeTable:
    """A graded batch with the given outcomes (the real lookup the stage uses)."""
    return GradeTable(GradeResult("item", a, b, outcome) for a, b, outcome in rows)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Blue   Whale\n", "blue whale"),  # trim, collapse runs, lower-case
        ("1 / 2", "1 / 2"),  # inner spaces kept: `1 / 2` is not rewritten (§13.13)
        ("x" * 500, "x" * 500),  # no 120-character truncation (§13.12)
        ("None", None),  # mathruler's no-box string is a non-answer
        (" N/A ", None),  # listed non-answer, trimmed and lower-cased first
        ("-", None),  # dash non-answer
        ("", None),  # empty
        (None, None),  # missing box
        ("no pattern", "no pattern"),  # "no " is an answer like any other
    ],
    ids=["whitespace", "fraction", "long", "none", "na", "dash", "empty", "missing", "no-prefix"],
)
def test_normalise_answer_table_matches_rule(raw: str | None, expected: str | None) -> None:
    assert normalise_answer(raw) == expected


@given(st.text(max_size=40))
def test_normalise_answer_any_text_is_idempotent(text: str) -> None:
    once = normalise_answer(text)
    assert once is None or normalise_answer(once) == once


@given(st.sampled_from(sorted(NON_ANSWERS)), st.text(alphabet=" \t\n", max_size=3))
def test_normalise_answer_padded_non_answer_is_none(word: str, pad: str) -> None:
    assert normalise_answer(pad + word.upper() + pad) is None


@pytest.mark.parametrize(
    ("answer", "reference", "grades", "expected"),
    [
        ("Paris", "paris", table(), "correct"),  # normalised text settles it, no lookup
        (None, "None", table(), "wrong"),  # no box never matches a "None" label (§15)
        ("0.5", "1/2", table(("0.5", "1/2", "correct")), "correct"),  # graded correct
        ("3", "4", table(("3", "4", "wrong")), "wrong"),  # graded wrong
        ("9**9**9", "x", table(("9**9**9", "x", "timeout")), "timeout"),  # failure surfaces
    ],
    ids=["text", "no-box", "graded-correct", "graded-wrong", "graded-timeout"],
)
def test_grade_either_way_table_gives_outcome(
    answer: str | None, reference: str, grades: GradeTable, expected: GradeOutcome
) -> None:
    assert grade_either_way(answer, reference, grades) == expected


def test_grade_either_way_one_direction_correct_is_correct() -> None:
    # A grader that is not symmetric: only reference -> answer holds; either way is enough.
    def forward_only(answer: str, reference: str) -> GradeOutcome:
        return "correct" if (answer, reference) == ("b", "a") else "wrong"

    assert grade_either_way("a", "b", forward_only) == "correct"


@pytest.mark.parametrize(
    ("answers", "label", "votes", "valid"),
    [
        (["7", "8", "8", "7"], "7", 2, 4),  # 2-2 tie: the group opened first wins
        (["8", "7", "7", "8"], "8", 2, 4),  # same multiset, other order: the other label
        (["None", None, "n/a", ""], None, 0, 0),  # all non-answers: no label, c = 0
        (["42"], "42", 1, 1),  # a batch of one
        (["A", " a", "b"], "A", 2, 3),  # case and spaces fold together; first spelling kept
        (["piano keys", "casino night", "volcano eruption", "piano", "keys"], "piano keys", 1, 5),
        # ^ §15: the reference's "no " merge gave c = 0.6 here; every answer is its own group
    ],
    ids=["tie-first", "tie-order", "all-none", "one", "fold", "no-merge"],
)
def test_majority_vote_table_picks_label(
    answers: list[str | None], label: str | None, votes: int, valid: int
) -> None:
    vote = majority_vote(answers, grades=text_grade)
    assert (vote.label, vote.votes, vote.valid) == (label, votes, valid)


def test_majority_vote_all_non_answers_has_zero_consistency() -> None:
    assert majority_vote([None, "unknown"], grades=text_grade).consistency == 0.0


def test_majority_vote_graded_equal_answers_share_a_group() -> None:
    # 0.5 and 1/2 graded equal: group {0.5, 1/2, 0.5} (3) beats {3} (1); c = 3/4.
    grades = table(("0.5", "1/2", "correct"), ("0.5", "3", "wrong"), ("1/2", "3", "wrong"))
    vote = majority_vote(["3", "0.5", "1/2", "0.5"], grades=grades)
    assert (vote.label, vote.votes, vote.consistency, vote.groups) == (
        "0.5",
        3,
        0.75,
        ((0,), (1, 2, 3)),
    )


def test_majority_vote_failed_grading_keeps_answers_apart() -> None:
    vote = majority_vote(["a", "b"], grades=table(("a", "b", "timeout")))
    assert vote.groups == ((0,), (1,))


def test_majority_vote_variant_spellings_need_only_listed_pairs() -> None:
    # "FOUR" is graded as its first spelling "four": the pair vote_pairs listed is enough.
    answers = ["four", "4", "FOUR"]
    grades = table(*((a, b, "correct") for a, b in vote_pairs(answers)))
    assert majority_vote(answers, grades=grades).votes == 3


def test_vote_pairs_distinct_answers_each_pair_once() -> None:
    assert vote_pairs(["1", "2", " 1", "3", None]) == [("1", "2"), ("1", "3"), ("2", "3")]


votes_lists = st.lists(
    st.one_of(st.none(), st.sampled_from(["1", "2", "3", " 2", "None", "", "n/a"])), max_size=12
)


@given(votes_lists)
def test_majority_vote_any_answers_winner_count_is_maximal(answers: list[str | None]) -> None:
    vote = majority_vote(answers, grades=text_grade)
    assert all(vote.votes >= len(group) for group in vote.groups)
    assert sum(len(group) for group in vote.groups) == vote.valid


@given(votes_lists)
def test_majority_vote_any_answers_consistency_in_unit_interval(answers: list[str | None]) -> None:
    vote = majority_vote(answers, grades=text_grade)
    assert (0 < vote.consistency <= 1) if vote.valid else vote.consistency == 0


@given(votes_lists, st.lists(st.sampled_from([None, "None", "", "-", "unknown"]), max_size=5))
def test_majority_vote_added_non_answers_change_nothing(
    answers: list[str | None], extra: list[str | None]
) -> None:
    before = majority_vote(answers, grades=text_grade)
    after = majority_vote(extra + answers + extra, grades=text_grade)
    assert (after.label, after.votes, after.valid) == (before.label, before.votes, before.valid)


@given(votes_lists)
def test_majority_vote_same_input_same_result(answers: list[str | None]) -> None:
    assert majority_vote(answers, grades=text_grade) == majority_vote(answers, grades=text_grade)


@given(votes_lists)
def test_majority_vote_any_answers_tie_goes_to_first_appearance(answers: list[str | None]) -> None:
    vote = majority_vote(answers, grades=text_grade)
    if vote.label is not None:
        first_max = next(g for g in vote.groups if len(g) == vote.votes)
        assert quick_grade(answers[first_max[0]], vote.label) == "correct"
