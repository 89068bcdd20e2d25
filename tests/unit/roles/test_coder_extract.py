"""Coder prompt, proposal block and SVG extraction (reference §2.4, §3.2, §15)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.roles import (
    CODER_INSTRUCTION,
    Extraction,
    Proposal,
    build_coder_messages,
    extract_svg,
    proposal_block,
)
from mmzero_runtime.roles.coder import SvgSource

PROPOSAL = Proposal(
    caption="Two bar groups.\nRed is 2019, blue is 2021.",
    easy_question="What is the red bar's value?",
    easy_answer="40",
    hard_question="What is the difference?",
    hard_answer="15",
    content_type="data_chart",
)
SVG = '<svg viewBox="0 0 10 10"><rect width="10" height="10" fill="white"/></svg>'


def test_proposal_block_full_proposal_matches_reference_layout() -> None:
    assert proposal_block(PROPOSAL) == (
        "Visual Type: svg\n\nChart Description:\nTwo bar groups.\nRed is 2019, blue is 2021.\n\n"
        "Easy Question: What is the red bar's value?\nEasy Answer: 40\n\n"
        "Hard Question: What is the difference?\nHard Answer: 15"
    )


@pytest.mark.parametrize(
    ("hard_question", "hard_answer", "tail"),
    [
        # both missing, as the lenient offline parse allowed (§2.4 step 4)
        pytest.param("", "", "Hard Question: N/A\nHard Answer: N/A", id="both-missing"),
        # whitespace only counts as missing
        pytest.param("  ", "15", "Hard Question: N/A\nHard Answer: 15", id="blank-question"),
        # only the answer missing
        pytest.param("Why?", "", "Hard Question: Why?\nHard Answer: N/A", id="no-answer"),
    ],
)
def test_proposal_block_missing_hard_field_writes_na(
    hard_question: str, hard_answer: str, tail: str
) -> None:
    proposal = Proposal("c", "q", "a", hard_question, hard_answer)
    assert proposal_block(proposal).endswith(tail)


def test_build_coder_messages_block_then_instruction_returns_one_text_turn() -> None:
    (message,) = build_coder_messages(PROPOSAL)
    assert message["role"] == "user"
    assert message["content"] == [
        {"type": "text", "text": f"{proposal_block(PROPOSAL)}\n\n{CODER_INSTRUCTION}"}
    ]


@pytest.mark.parametrize(
    "needle",
    [
        # the critical rule: the easy answer visible as given
        pytest.param("exactly as\nwritten", id="easy-answer-visible"),
        # fenced raw SVG, no Python
        pytest.param("starts with <svg, inside a single ```svg fenced", id="fence"),
        pytest.param("not write Python", id="no-python"),
        # the drawing guidelines
        pytest.param("viewBox", id="viewbox"),
        pytest.param("<text> elements for every label, title and value", id="text-elements"),
        pytest.param("at least \n12px and titles at least 14px", id="font-sizes"),
        pytest.param("clearly different fill colours", id="distinct-fills"),
        pytest.param("no external files, images, fonts, stylesheets", id="self-contained"),
        pytest.param("no text or shapes overlap", id="no-overlap"),
        # our addition: an opaque background, since transparent turns black (§4)
        pytest.param("covers the whole viewBox with an opaque \nfill", id="background"),
    ],
)
def test_coder_instruction_rule_present(needle: str) -> None:
    assert " ".join(needle.split()) in " ".join(CODER_INSTRUCTION.split())


@pytest.mark.parametrize(
    ("response", "code", "source"),
    [
        # the normal case: one svg fence
        pytest.param(f"Here:\n```svg\n{SVG}\n```\n", SVG, "svg_fence", id="svg-fence"),
        # fence language in capitals
        pytest.param(f"```SVG\n{SVG}\n```", SVG, "svg_fence", id="svg-fence-capitals"),
        # §15: an empty svg fence must not beat a valid bare svg
        pytest.param(f"```svg\n```\nOops: {SVG}", SVG, "bare_svg", id="empty-fence-then-bare"),
        # a blank fence is skipped in favour of a later non-empty fence
        pytest.param(f"```svg\n  \n```\n```svg\n{SVG}\n```", SVG, "svg_fence", id="blank-fence"),
        # the first non-empty svg fence wins even when it is not SVG (svg_ok flags it)
        pytest.param("```svg\nprint(1)\n```\n" + SVG, "print(1)", "svg_fence", id="fence-first"),
        # xml fence with an svg inside, prolog kept
        pytest.param(
            f'```xml\n<?xml version="1.0"?>\n{SVG}\n```',
            f'<?xml version="1.0"?>\n{SVG}',
            "xml_fence",
            id="xml-fence",
        ),
        # an xml fence without svg is skipped
        pytest.param(f"```xml\n<a/>\n```\n{SVG}", SVG, "bare_svg", id="xml-fence-no-svg"),
        # bare svg, case-insensitive tags
        pytest.param(
            "<SVG viewBox='0 0 1 1'></SVG> tail",
            "<SVG viewBox='0 0 1 1'></SVG>",
            "bare_svg",
            id="bare-capitals",
        ),
        # §15: a nested svg is not cut at the first </svg>
        pytest.param(
            "x <svg a='1'><svg b='2'><rect/></svg><text>t</text></svg> y",
            "<svg a='1'><svg b='2'><rect/></svg><text>t</text></svg>",
            "bare_svg",
            id="nested-svg",
        ),
        # a self-closing nested svg does not open a level
        pytest.param(
            "<svg><svg/></svg></svg>", "<svg><svg/></svg>", "bare_svg", id="self-closing-nested"
        ),
        # a self-closing root is an element of its own
        pytest.param(
            "see <svg width='1'/> end", "<svg width='1'/>", "bare_svg", id="self-closing-root"
        ),
        # an outer svg that never closes falls back to the last </svg>
        pytest.param("<svg><svg></svg> cut", "<svg><svg></svg>", "bare_svg", id="unclosed-outer"),
        # a stray end tag before the element is ignored
        pytest.param(f"</svg> {SVG}", SVG, "bare_svg", id="stray-end-tag"),
        # <svgfoo> is another element
        pytest.param("<svgfoo></svgfoo>", "", "none", id="other-element"),
        # a truncated reply with no end tag extracts nothing
        pytest.param("<svg viewBox='0 0 1 1'><rect", "", "none", id="truncated"),
        # no svg at all
        pytest.param("I cannot draw that.", "", "none", id="no-svg"),
    ],
)
def test_extract_svg_response_returns_expected_code(
    response: str, code: str, source: SvgSource
) -> None:
    assert extract_svg(response) == Extraction(code, source)


@pytest.mark.parametrize(
    ("code", "syntax_error", "svg_ok"),
    [
        # a proper svg
        pytest.param(SVG, False, True, id="svg"),
        # starts with "<" but is not svg: compliant per the reference's loose rule
        pytest.param("<html></html>", False, True, id="starts-with-angle"),
        # contains <svg after other text
        pytest.param("note <svg></svg>", False, True, id="contains-svg"),
        # Python in the fence
        pytest.param("import matplotlib", False, False, id="python"),
        # nothing extracted
        pytest.param("", True, False, id="empty"),
    ],
)
def test_extraction_flags_code_returns_reward_flags(
    code: str, syntax_error: bool, svg_ok: bool
) -> None:
    extraction = Extraction(code, "svg_fence")
    assert (extraction.syntax_error, extraction.svg_ok) == (syntax_error, svg_ok)


@given(
    prefix=st.text(),
    tag=st.sampled_from(["svg", "SVG", "Svg"]),
    attributes=st.text(alphabet=st.characters(exclude_characters="<>")),
    body=st.text(),
    suffix=st.text(),
)
def test_extract_svg_svg_anywhere_never_returns_empty(
    prefix: str, tag: str, attributes: str, body: str, suffix: str
) -> None:
    svg = f"<{tag} {attributes}>{body}</{tag}>"
    assert extract_svg(prefix + svg + suffix).code != ""


@given(st.text())
def test_extract_svg_arbitrary_text_never_raises(text: str) -> None:
    assert isinstance(extract_svg(text), Extraction)
