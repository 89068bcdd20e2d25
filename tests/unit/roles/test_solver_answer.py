"""Solver prompt, boxed-answer extraction and the format check (reference §3.3, §13.13, §15)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.roles import (
    SOLVER_INSTRUCTION,
    build_solver_messages,
    check_format,
    extract_boxed,
)
from mmzero_runtime.spec import FormatCheck, SolverRewardSpec


def test_build_solver_messages_question_returns_one_image_then_text() -> None:
    (message,) = build_solver_messages("How many bars are red?")
    assert message["role"] == "user"
    assert message["content"] == [
        {"type": "image"},
        {"type": "text", "text": f"How many bars are red?\n\n{SOLVER_INSTRUCTION}"},
    ]


@pytest.mark.parametrize(
    "needle",
    [
        # reasoning inside think tags
        pytest.param("inside <think> </think>", id="think"),
        # final answer boxed
        pytest.param("answer inside \\boxed{}", id="boxed"),
        # one short answer, no units, no sentences
        pytest.param("one number, one word or a short phrase", id="short"),
        pytest.param("no units and no sentences", id="no-units"),
    ],
)
def test_solver_instruction_rule_present(needle: str) -> None:
    assert needle in " ".join(SOLVER_INSTRUCTION.split())


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # the plain case
        pytest.param("<think>.</think> \\boxed{42}", "42", id="single"),
        # the last box wins
        pytest.param("\\boxed{1} no wait \\boxed{2}", "2", id="last-box"),
        # nested braces are balanced
        pytest.param("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", id="nested-frac"),
        # surrounding whitespace goes, as in the reference
        pytest.param("\\boxed{  blue \n}", "blue", id="outer-whitespace"),
        # §13.13: inner whitespace stays
        pytest.param("\\boxed{1 / 2}", "1 / 2", id="inner-whitespace"),
        # an empty box is an empty answer, not no answer
        pytest.param("\\boxed{}", "", id="empty-box"),
        # only the first brace group belongs to the box
        pytest.param("\\boxed{a}{b}", "a", id="following-group"),
        # §15: no box is None, not the string "None"
        pytest.param("The answer is 42.", None, id="no-box"),
        # a truncated last box gives None even after a complete one (as the reference)
        pytest.param("\\boxed{1} then \\boxed{2", None, id="unclosed-last"),
        # braces in the text after the box do not matter
        pytest.param("\\boxed{x} }{", "x", id="trailing-braces"),
    ],
)
def test_extract_boxed_response_returns_last_box(response: str, expected: str | None) -> None:
    assert extract_boxed(response) == expected


_plain = st.text(alphabet=st.characters(exclude_characters="{}\\"))
balanced = st.recursive(
    _plain,
    lambda inner: st.tuples(inner, inner, inner).map(
        lambda parts: f"{parts[0]}{{{parts[1]}}}{parts[2]}"
    ),
)


@given(prefix=st.text(), content=balanced, suffix=st.text())
def test_extract_boxed_balanced_content_returns_it_stripped(
    prefix: str, content: str, suffix: str
) -> None:
    suffix = suffix.replace("\\boxed{", "")
    assert extract_boxed(f"{prefix}\\boxed{{{content}}}{suffix}") == content.strip()


@given(st.text())
def test_extract_boxed_arbitrary_text_never_raises(text: str) -> None:
    result = extract_boxed(text)
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    ("response", "strict", "reference"),
    [
        # the requested shape
        pytest.param("<think>40 - 25 = 15</think> \\boxed{15}", True, True, id="valid"),
        # whitespace at both ends and a newline before the box
        pytest.param("\n <think>a</think>\n\n\\boxed{15} \n", True, True, id="whitespace"),
        # no whitespace between think and box
        pytest.param("<think>a</think>\\boxed{15}", True, True, id="adjacent"),
        # nested braces in the box
        pytest.param("<think>a</think> \\boxed{\\frac{1}{2}}", True, True, id="nested-braces"),
        # an empty thought is still the format
        pytest.param("<think></think> \\boxed{15}", True, True, id="empty-thought"),
        # a thought over several lines
        pytest.param("<think>a\nb\n</think> \\boxed{15}", True, True, id="multi-line"),
        # text after the box fails, as in the reference
        pytest.param("<think>a</think> \\boxed{15} because", False, False, id="trailing-text"),
        # a second box: only the reference's check accepts it
        pytest.param("<think>a</think> \\boxed{1} \\boxed{2}", False, True, id="two-boxes"),
        # text between think and box fails
        pytest.param("<think>a</think> So: \\boxed{15}", False, False, id="text-before-box"),
        # text before think fails
        pytest.param("Answer: <think>a</think> \\boxed{15}", False, False, id="before-think"),
        # no think block
        pytest.param("\\boxed{15}", False, False, id="no-think"),
        # unclosed think
        pytest.param("<think>a \\boxed{15}", False, False, id="unclosed-think"),
        # a nested second think: only the reference's check accepts it
        pytest.param("<think>a<think>b</think> \\boxed{15}", False, True, id="nested-think"),
        # a second think block after the first: only the reference's check accepts it
        pytest.param("<think>a</think><think>b</think> \\boxed{1}", False, True, id="two-thinks"),
        # the box only inside the thought
        pytest.param("<think>\\boxed{15}</think>", False, False, id="box-inside-think"),
        # an empty or blank box: no answer for strict, the format for the reference
        pytest.param("<think>a</think> \\boxed{ }", False, True, id="blank-box"),
        # an unclosed box (truncated)
        pytest.param("<think>a</think> \\boxed{15", False, False, id="unclosed-box"),
    ],
)
def test_check_format_response_returns_expected_per_rule(
    response: str, strict: bool, reference: bool
) -> None:
    assert (check_format(response, "strict"), check_format(response, "reference")) == (
        strict,
        reference,
    )


@pytest.mark.parametrize("rule", ["reference", "strict"])
@pytest.mark.parametrize(
    "response",
    [
        pytest.param("< think >a</ think >\\boxed{5}", id="spaced-both"),
        pytest.param("<think >a< /think>\\boxed{5}", id="spaced-inner"),
        pytest.param("<\nthink>a</think\n> \\boxed{5}", id="newline"),
    ],
)
def test_check_format_whitespace_inside_think_tags_passes(response: str, rule: FormatCheck) -> None:
    # the reference removes whitespace around < > / before matching (§5.5); both rules agree
    assert check_format(response, rule)


def test_check_format_default_rule_is_the_reference_and_the_spec_default() -> None:
    # a second box: the reference's check passes it, the strict one does not
    reply = "<think>a</think> \\boxed{1} \\boxed{2}"
    assert SolverRewardSpec().format_check == "reference"
    assert (check_format(reply), check_format(reply, "strict")) == (True, False)


@given(st.text(), st.sampled_from(["reference", "strict"]))
def test_check_format_arbitrary_text_never_raises(text: str, rule: FormatCheck) -> None:
    assert isinstance(check_format(text, rule), bool)
