"""Answer normalisation and the majority vote behind every consistency and pseudo-label.

One rule everywhere (reference §5.2, fixing §13.12): an answer is a vote unless it is missing or
one of the non-answers below; votes are grouped by normalised text or by the grader's verdict in
either direction; the largest group wins and ties go to the group that appeared first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

GradeOutcome = Literal["correct", "wrong", "timeout", "crash", "rejected"]
"""Result of comparing two answers. Only `correct` and `wrong` may become rewards; the others are
failures that are counted with the item id (user-asks §6.1)."""

Grades = Callable[[str, str], GradeOutcome]
"""Grades `answer` against `reference`; rewards and votes take one as keyword context."""

NON_ANSWERS = frozenset({"", "none", "n/a", "na", "null", "unknown", "-"})
"""Normalised texts that never count as votes (§5.2 service list). mathruler's box extractor
returns the string "None" when there is no box, which lands here too."""

_WHITESPACE = re.compile(r"\s+")


def normalise_answer(answer: str | None) -> str | None:
    """Lower-case, trim and collapse whitespace runs; None for a missing answer or a non-answer.

    Inner whitespace is kept (one space), so `1 / 2` stays `1 / 2` (fixing §13.13), and nothing
    is truncated (fixing §13.12's 120-character cut).

    >>> normalise_answer("  Blue\\n Whale ")
    'blue whale'
    >>> normalise_answer("1 / 2")
    '1 / 2'
    >>> normalise_answer(" N/A ") is None, normalise_answer(None) is None
    (True, True)
    """
    if answer is None:
        return None
    text = _WHITESPACE.sub(" ", answer).strip().lower()
    return None if text in NON_ANSWERS else text


def is_answer(answer: str | None) -> bool:
    """True when `answer` is a vote: present and not a non-answer."""
    return normalise_answer(answer) is not None


def quick_grade(answer: str | None, reference: str | None) -> GradeOutcome | None:
    """The in-process verdict where no grader is needed, else None.

    A non-answer on either side is `wrong` (it never matches anything, not even another
    non-answer: §15 "no box vs None label"); normalised-equal texts are `correct`.

    >>> quick_grade("Blue  whale", "blue whale"), quick_grade(None, "None"), quick_grade("3", "3.0")
    ('correct', 'wrong', None)
    """
    left, right = normalise_answer(answer), normalise_answer(reference)
    if left is None or right is None:
        return "wrong"
    return "correct" if left == right else None


def text_grade(answer: str, reference: str) -> GradeOutcome:
    """A grader that knows only normalised text equality: for tests, doctests and dry runs."""
    return quick_grade(answer, reference) or "wrong"


def grade_either_way(answer: str | None, reference: str | None, grades: Grades) -> GradeOutcome:
    """`correct` if normalised-equal or graded correct in either direction (§5.2, §5.3 step 4);
    a failure outcome when neither direction is correct and one failed; else `wrong`.

    >>> grade_either_way("Blue", "blue ", text_grade), grade_either_way(None, "3", text_grade)
    ('correct', 'wrong')
    """
    quick = quick_grade(answer, reference)
    if quick is not None:
        return quick
    assert answer is not None and reference is not None  # quick_grade settles missing answers
    forward = grades(answer, reference)
    if forward == "correct":
        return forward
    backward = grades(reference, answer)
    if backward == "correct" or forward == "wrong":
        return backward
    return forward


def equivalent(left: str, right: str, grades: Grades) -> bool:
    """Same vote: normalised-equal or graded correct either way; a failed grading is not."""
    return grade_either_way(left, right, grades) == "correct"


@dataclass(frozen=True)
class Vote:
    """Outcome of a majority vote over one item's sampled answers."""

    label: str | None
    """The winning group's first answer (trimmed), or None when no answer was a vote."""
    votes: int
    """Size of the winning group."""
    valid: int
    """Number of answers that were votes (non-answers excluded)."""
    groups: tuple[tuple[int, ...], ...]
    """Sample indices per group, groups in order of first appearance."""

    @property
    def consistency(self) -> float:
        """c = |largest group| / |valid answers|, 0 when nothing was a vote (§5.2)."""
        return self.votes / self.valid if self.valid else 0.0

    @property
    def margin(self) -> float:
        """(|largest group| - |second largest|) / |valid answers|: how clearly the label won
        (1 when every vote agrees, 0 for a tie or no vote)."""
        sizes = [*sorted((len(g) for g in self.groups), reverse=True), 0, 0]
        return (sizes[0] - sizes[1]) / self.valid if self.valid else 0.0


def representatives(answers: Sequence[str | None]) -> dict[str, str]:
    """Normalised text -> its first trimmed answer, in order of first appearance."""
    seen: dict[str, str] = {}
    for answer in answers:
        key = normalise_answer(answer)
        if key is not None and answer is not None and key not in seen:
            seen[key] = answer.strip()
    return seen


def vote_pairs(answers: Sequence[str | None]) -> list[tuple[str, str]]:
    """Every pair of distinct answers a vote may need graded, each pair once.

    The vote compares answers in both directions; the grader grades a pair both ways at once.

    >>> vote_pairs(["4", " 4", "four", None, "5"])
    [('4', 'four'), ('4', '5'), ('four', '5')]
    """
    distinct = list(representatives(answers).values())
    return [(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]


def majority_vote(answers: Sequence[str | None], *, grades: Grades) -> Vote:
    """Greedy grouping in sample order, then the largest group wins (§5.2).

    Each vote joins the first group whose first answer is equivalent to it, else opens a group.
    Ties between equally large groups go to the group opened first, i.e. the one holding the
    lowest sample index; samples are ordered by sample index, so the result is deterministic
    (fixing §13.18's arrival-order tie-break). Answers with equal normalised text always share a
    group, so only `vote_pairs(answers)` are ever graded.

    >>> vote = majority_vote(["7", "7 ", "8", None, "8", "none"], grades=text_grade)
    >>> vote.label, vote.votes, vote.valid, vote.consistency, vote.groups
    ('7', 2, 4, 0.5, ((0, 1), (2, 4)))
    """
    representative = representatives(answers)
    heads: list[str] = []
    members: list[list[int]] = []
    for index, answer in enumerate(answers):
        key = normalise_answer(answer)
        if key is None:
            continue
        text = representative[key]  # grade the text vote_pairs() listed
        for head, group in zip(heads, members, strict=True):
            if equivalent(text, head, grades):
                group.append(index)
                break
        else:
            heads.append(text)
            members.append([index])
    if not heads:
        return Vote(label=None, votes=0, valid=0, groups=())
    sizes = [len(group) for group in members]
    best = sizes.index(max(sizes))  # first maximal group: the deterministic tie-break
    return Vote(
        label=heads[best],
        votes=sizes[best],
        valid=sum(sizes),
        groups=tuple(tuple(group) for group in members),
    )
