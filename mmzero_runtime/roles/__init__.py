"""Prompts and parsers of the three MM-Zero roles: Proposer, Coder and Solver (reference §3).

Builders return chat messages; `render_prompt` is the only way they become model input.
Parsers never raise: a failure is a value (`ParseFailure`, an empty `Extraction`, `None`).
"""

from mmzero_runtime.roles.chat import (
    ChatMessage,
    ChatTemplater,
    ContentPart,
    ImagePart,
    TextPart,
    render_prompt,
)
from mmzero_runtime.roles.coder import (
    CODER_INSTRUCTION,
    Extraction,
    build_coder_messages,
    extract_svg,
    proposal_block,
)
from mmzero_runtime.roles.content_type import (
    classify_content_type,
    normalise_content_type,
    reward_content_type,
)
from mmzero_runtime.roles.errors import ChatTemplateError
from mmzero_runtime.roles.proposer import (
    PROPOSER_INSTRUCTION,
    ParseFailure,
    Proposal,
    build_proposer_messages,
    parse_proposal,
    proposal_xml,
)
from mmzero_runtime.roles.solver import (
    SOLVER_INSTRUCTION,
    build_solver_messages,
    check_format,
    extract_boxed,
)

__all__ = [
    "CODER_INSTRUCTION",
    "PROPOSER_INSTRUCTION",
    "SOLVER_INSTRUCTION",
    "ChatMessage",
    "ChatTemplateError",
    "ChatTemplater",
    "ContentPart",
    "Extraction",
    "ImagePart",
    "ParseFailure",
    "Proposal",
    "TextPart",
    "build_coder_messages",
    "build_proposer_messages",
    "build_solver_messages",
    "check_format",
    "classify_content_type",
    "extract_boxed",
    "extract_svg",
    "normalise_content_type",
    "parse_proposal",
    "proposal_block",
    "proposal_xml",
    "render_prompt",
    "reward_content_type",
]
