"""The Solver role: its prompt, the boxed answer it gives, and the format check of its reward.

The prompt follows reference §3.3 in our own words and is the same in training, serving and
evaluation (the reference's eval prompt drifted, §13.15). Parsing keeps text as written: no
whitespace is removed inside an answer (§13.13), only around it.
"""

from __future__ import annotations

import re

from mmzero_runtime.roles.chat import ChatMessage, image_part, text_part, user_turn
from mmzero_runtime.spec import FormatCheck

SOLVER_INSTRUCTION = """\
Look at the image carefully. Reason step by step inside <think> </think>, then write your final \
answer inside \\boxed{}. The final answer must be one number, one word or a short phrase (for \
example \\boxed{17}, \\boxed{green} or \\boxed{Tuesday}), with no units and no sentences."""

_BOX = "\\boxed{"
_THINK_OPEN = re.compile(r"<\s*think\s*>")
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>")
_TAG_SPACE = re.compile(r"\s*([<>/])\s*")
"""Whitespace the reference removes around tag marks before its format check."""
_REFERENCE_FORMAT = re.compile(r"<think>.*</think>\s*\\boxed\{.*\}\s*", re.DOTALL)


def build_solver_messages(question: str) -> list[ChatMessage]:
    """The Solver's conversation: exactly one image, then the question and the instruction."""
    return user_turn(image_part(), text_part(f"{question}\n\n{SOLVER_INSTRUCTION}"))


def _closing_brace(text: str, open_at: int) -> int | None:
    """Index of the `}` matching the `{` at `open_at`, or None when it never closes."""
    depth = 0
    for index in range(open_at, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def extract_boxed(response: str) -> str | None:
    r"""The content of the last `\boxed{…}`, braces balanced, stripped at both ends.

    None when there is no box or the last one never closes (a truncated reply); unlike the
    reference's extractor this is None, not the string "None" (§3.3, §15). `\boxed{}` gives "".

    >>> extract_boxed(r"\boxed{1} so \boxed{\frac{1}{2}}"), extract_boxed("no box")
    ('\\frac{1}{2}', None)
    """
    start = response.rfind(_BOX)
    if start < 0:
        return None
    open_at = start + len(_BOX) - 1
    close_at = _closing_brace(response, open_at)
    return None if close_at is None else response[open_at + 1 : close_at].strip()


def check_format(response: str, rule: FormatCheck = "reference") -> bool:
    r"""Whether a reply is in the Solver's format: `<think>…</think>` then `\boxed{…}` (§5.5).

    `reference`: the reference's check, the whole reply matching `<think>.*</think>\s*\boxed{.*}`
    once whitespace around `<`, `>` and `/` is removed, so a second think block, a second box or
    an empty box still pass. `strict`: one think block, then one non-empty box, nothing else.
    Both allow whitespace inside the think tags and at both ends, and fail text after the box.

    >>> check_format("< think >7 - 4 = 3</ think > \\boxed{3}"), check_format("\\boxed{3}")
    (True, False)
    >>> reply = "<think>a</think> \\boxed{}"
    >>> check_format(reply), check_format(reply, "strict")
    (True, False)
    """
    match rule:
        case "reference":
            return _REFERENCE_FORMAT.fullmatch(_TAG_SPACE.sub(r"\1", response)) is not None
        case "strict":
            return _strict_format(response)


def _strict_format(response: str) -> bool:
    text = response.strip()
    opened = _THINK_OPEN.match(text)
    if opened is None:
        return False
    closed = _THINK_CLOSE.search(text, opened.end())
    if closed is None or _THINK_OPEN.search(text, opened.end(), closed.start()):
        return False
    rest = text[closed.end() :].lstrip()
    if not rest.startswith(_BOX):
        return False
    close_at = _closing_brace(rest, len(_BOX) - 1)
    if close_at is None or rest[close_at + 1 :].strip():
        return False
    return bool(rest[len(_BOX) : close_at].strip())
