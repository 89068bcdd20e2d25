"""Proposer prompt and strict parser (reference §3.1, §13.13, §15)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.roles import (
    PROPOSER_INSTRUCTION,
    ParseFailure,
    Proposal,
    build_proposer_messages,
    parse_proposal,
    proposal_xml,
)
from mmzero_runtime.spec import CONTENT_TYPES, SEED_TOPICS

HARD = "<hard_question>How far apart are the peaks?</hard_question><hard_answer>3</hard_answer>"
EASY = "<easy_question>Which bar is red?</easy_question><easy_answer>B</easy_answer>"
FULL = f"<content_type>data_chart</content_type><caption>Bars.</caption>{EASY}{HARD}"


def make_proposal(**changes: str) -> Proposal:
    """A valid proposal with the given fields replaced."""
    fields = {
        "caption": "Bars.",
        "easy_question": "Which bar is red?",
        "easy_answer": "B",
        "hard_question": "How far apart are the peaks?",
        "hard_answer": "3",
        "content_type": "data_chart",
    }
    return Proposal(**{**fields, **changes})


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # the six tags, as the prompt asks
        pytest.param(FULL, make_proposal(), id="six-tags"),
        # prose and a blank line around the blocks do not matter
        pytest.param(f"Sure!\n{FULL}\n\nDone.", make_proposal(), id="surrounding-prose"),
        # whitespace inside the tag marks is tolerated, as after the reference's stripping
        pytest.param(
            FULL.replace("<caption>", "< caption >").replace("</caption>", "</ caption >"),
            make_proposal(),
            id="spaced-tag-marks",
        ),
        # §13.13: the spaces around "/" in a value survive (the reference made "1/2")
        pytest.param(
            FULL.replace("<hard_answer>3", "<hard_answer>1 / 2"),
            make_proposal(hard_answer="1 / 2"),
            id="spaced-slash-kept",
        ),
        # "<" and ">" in a value that are not tags survive untouched
        pytest.param(
            FULL.replace("Bars.", "Bars where a < b and c > d."),
            make_proposal(caption="Bars where a < b and c > d."),
            id="comparison-signs-kept",
        ),
        # a multi-line caption keeps its inner newlines; only the ends are stripped
        pytest.param(
            FULL.replace("Bars.", "\n  Line one.\n  Line two.\n"),
            make_proposal(caption="Line one.\n  Line two."),
            id="multiline-caption",
        ),
        # content_type is optional: missing means other
        pytest.param(
            FULL.split("</content_type>")[1], make_proposal(content_type="other"), id="no-type"
        ),
        # normalised: case, spaces and hyphens
        pytest.param(
            FULL.replace(">data_chart<", "> Data Chart <"), make_proposal(), id="type-spaced-case"
        ),
        # a hyphenated type is normalised too
        pytest.param(
            FULL.replace(">data_chart<", ">data-chart<"), make_proposal(), id="type-hyphen"
        ),
        # an unknown type becomes other (the keyword fallback is a separate function)
        pytest.param(
            FULL.replace(">data_chart<", ">bar chart<"),
            make_proposal(content_type="other"),
            id="type-unknown",
        ),
        # an empty content_type is not a failure, just other
        pytest.param(
            FULL.replace(">data_chart<", "><"), make_proposal(content_type="other"), id="type-empty"
        ),
        # the first block of a tag wins when the model repeats it
        pytest.param(FULL + "<caption>Second.</caption>", make_proposal(), id="first-block-wins"),
    ],
)
def test_parse_proposal_valid_response_returns_proposal(response: str, expected: Proposal) -> None:
    assert parse_proposal(response) == expected


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        # nothing at all: the first required tag is named
        pytest.param("", "missing <caption>", id="empty-text"),
        # §15: an empty hard answer is a failure, not the text of the next tag
        pytest.param(
            FULL.replace("<hard_answer>3</hard_answer>", "<hard_answer></hard_answer>"),
            "empty <hard_answer>",
            id="empty-hard-answer",
        ),
        # an empty hard answer followed by more tags is still empty
        pytest.param(
            FULL.replace("<hard_answer>3</hard_answer>", "<hard_answer></hard_answer>")
            + "<caption>x</caption>",
            "empty <hard_answer>",
            id="empty-hard-answer-then-tag",
        ),
        # whitespace only counts as empty
        pytest.param(FULL.replace("Bars.", " \n\t "), "empty <caption>", id="blank-caption"),
        # an unclosed block (a truncated reply) is missing
        pytest.param(FULL.replace("3</hard_answer>", "3"), "missing <hard_answer>", id="unclosed"),
        # hard Q/A are required by the strict parse, unlike the reference's offline parse
        pytest.param(
            f"<caption>Bars.</caption>{EASY}", "missing <hard_question>", id="no-hard-question"
        ),
        # the easy answer is checked before the hard fields
        pytest.param(
            FULL.replace("<easy_answer>B</easy_answer>", ""),
            "missing <easy_answer>",
            id="no-easy-answer",
        ),
        # tags are case-sensitive, as in the reference
        pytest.param(
            FULL.replace("caption>", "Caption>"), "missing <caption>", id="capitalised-tag"
        ),
    ],
)
def test_parse_proposal_bad_response_names_tag(response: str, reason: str) -> None:
    assert parse_proposal(response) == ParseFailure(reason)


_TAG_LIKE = re.compile(r"<\s*/?\s*\w+\s*>")
field_text = (
    st.text(min_size=1)
    .map(str.strip)
    .filter(lambda text: bool(text) and not _TAG_LIKE.search(text))
)


@given(
    caption=field_text,
    easy_question=field_text,
    easy_answer=field_text,
    hard_question=field_text,
    hard_answer=field_text,
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_parse_proposal_written_proposal_round_trips(
    caption: str,
    easy_question: str,
    easy_answer: str,
    hard_question: str,
    hard_answer: str,
    content_type: str,
) -> None:
    proposal = Proposal(
        caption, easy_question, easy_answer, hard_question, hard_answer, content_type
    )
    assert parse_proposal(proposal_xml(proposal)) == proposal


@given(st.text())
def test_parse_proposal_arbitrary_text_never_raises(text: str) -> None:
    assert isinstance(parse_proposal(text), Proposal | ParseFailure)


def test_build_proposer_messages_topic_first_returns_one_text_turn() -> None:
    messages = build_proposer_messages(SEED_TOPICS[0])
    assert [message["role"] for message in messages] == ["user"]
    (part,) = messages[0]["content"]
    assert part == {"type": "text", "text": f"{SEED_TOPICS[0]}\n\n{PROPOSER_INSTRUCTION}"}


@pytest.mark.parametrize(
    "needle",
    [
        # the six blocks, opened and closed
        *(pytest.param(f"<{tag}>", id=tag) for tag in ("content_type", "caption", "easy_question")),
        *(
            pytest.param(f"</{tag}>", id=tag)
            for tag in ("easy_answer", "hard_question", "hard_answer")
        ),
        # the whole content-type vocabulary from the spec
        pytest.param(", ".join(CONTENT_TYPES), id="content-types"),
        # the complexity rule
        pytest.param("at least 3 of these 7", id="complexity"),
        # the hard-question rule about reading values from the picture
        pytest.param("take at least one value from the picture", id="read-a-value"),
        # one-value answers
        pytest.param("one number, one word or a very short phrase", id="short-answers"),
    ],
)
def test_proposer_instruction_rule_present(needle: str) -> None:
    assert needle in PROPOSER_INSTRUCTION


def test_proposer_instruction_examples_two_weak_two_strong() -> None:
    assert PROPOSER_INSTRUCTION.count("- Weak:") == 2
    assert PROPOSER_INSTRUCTION.count("- Strong:") == 2
