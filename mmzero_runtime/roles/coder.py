"""The Coder role: the proposal block and instruction it is prompted with, and SVG extraction.

The prompt follows reference §3.2 in our own words, plus one rule the reference lacked: an opaque
background rectangle, since unpainted pixels turn black once the PNG loses its alpha (§4).
Extraction keeps the reference's fallback order but skips empty candidates and balances nested
`<svg>` elements, two cases where the reference returned nothing usable (§15).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mmzero_runtime.roles.chat import ChatMessage, text_part, user_turn
from mmzero_runtime.roles.proposer import Proposal

CODER_INSTRUCTION = """\
Write SVG code that draws the picture described above.

Most important: a reader of the drawn picture must be able to answer the easy question with \
exactly the easy answer given above, so that answer must appear in the picture exactly as \
written.

Requirements:
- Reply with raw SVG markup that starts with <svg, inside a single ```svg fenced code block. Do \
not write Python or any other programming language.
- Give the root <svg> element a viewBox, for example viewBox="0 0 800 600".
- Make the first element inside it a rectangle that covers the whole viewBox with an opaque \
fill, for example fill="white", so that nothing is drawn on a transparent background.
- Use <text> elements for every label, title and value. Labels need a font-size of at least \
12px and titles at least 14px.
- Give separate elements (bars, lines, slices, regions) clearly different fill colours that \
contrast well with the background.
- Draw with basic shapes: <line> for axes, <rect> for bars, <polyline> or <path> for lines, and \
<path> arcs or stroke-dasharray for pie slices.
- Keep it self-contained: no external files, images, fonts, stylesheets or scripts.
- Lay the picture out so that no text or shapes overlap."""

SvgSource = Literal["svg_fence", "xml_fence", "bare_svg", "none"]


@dataclass(frozen=True)
class Extraction:
    """The SVG code found in a Coder response, and where it was found."""

    code: str
    source: SvgSource

    @property
    def syntax_error(self) -> bool:
        """Nothing was extracted (the Coder reward's floor case, §5.4)."""
        return not self.code

    @property
    def svg_ok(self) -> bool:
        """The reference's compliance check: starts with `<` or contains `<svg` (§3.2)."""
        return self.code.strip().startswith("<") or "<svg" in self.code


def _or_na(value: str) -> str:
    """`N/A` for a blank field, as the reference's parquet builder wrote it (§2.4 step 4)."""
    return value if value.strip() else "N/A"


def proposal_block(proposal: Proposal) -> str:
    """The proposal as the Coder reads it, in the reference's exact layout (§3.2)."""
    return (
        "Visual Type: svg\n"
        "\n"
        "Chart Description:\n"
        f"{proposal.caption}\n"
        "\n"
        f"Easy Question: {proposal.easy_question}\n"
        f"Easy Answer: {proposal.easy_answer}\n"
        "\n"
        f"Hard Question: {_or_na(proposal.hard_question)}\n"
        f"Hard Answer: {_or_na(proposal.hard_answer)}"
    )


def build_coder_messages(proposal: Proposal) -> list[ChatMessage]:
    """The Coder's conversation: the proposal block, then the SVG instruction (§3.2)."""
    return user_turn(text_part(f"{proposal_block(proposal)}\n\n{CODER_INSTRUCTION}"))


_SVG_FENCE = re.compile(r"```svg[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
_XML_FENCE = re.compile(r"```xml[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
# An <svg ...> start tag (self-closing when it ends in "/>") or an </svg> end tag.
_SVG_TAG = re.compile(r"<svg(?=[\s/>])[^>]*>|</svg\s*>", re.IGNORECASE)


def _balanced_svg(text: str) -> str:
    """The first `<svg>` element with nested `<svg>` elements balanced, or "".

    When the outer element never closes, the text up to the last `</svg>` is returned, which is
    what the reference's non-greedy match would have found at best.
    """
    start: int | None = None
    depth = 0
    last_end: int | None = None
    for tag in _SVG_TAG.finditer(text):
        closing = tag.group().startswith("</")
        if start is None:
            if closing:
                continue  # a stray end tag before any start tag
            start, depth = tag.start(), 0
        if closing:
            depth, last_end = depth - 1, tag.end()
        elif not tag.group().endswith("/>"):
            depth += 1
        if depth == 0:
            return text[start : tag.end()]
    return text[start:last_end] if start is not None and last_end is not None else ""


def extract_svg(response: str) -> Extraction:
    """Find the SVG in a Coder response (§3.2 order), skipping empty candidates.

    Order: the first non-empty ```svg block; else the first ```xml block containing `<svg`;
    else the first balanced `<svg>…</svg>` element (case-insensitive); else nothing.

    >>> extract_svg("```svg\\n```\\nthen <svg><svg></svg></svg>").code
    '<svg><svg></svg></svg>'
    """
    for match in _SVG_FENCE.finditer(response):
        if code := match.group(1).strip():
            return Extraction(code, "svg_fence")
    for match in _XML_FENCE.finditer(response):
        code = match.group(1).strip()
        if "<svg" in code.lower():
            return Extraction(code, "xml_fence")
    if code := _balanced_svg(response):
        return Extraction(code, "bare_svg")
    return Extraction("", "none")
