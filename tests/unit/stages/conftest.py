"""Valid rows of every stored table, as the stages write them, for tests of their readers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.kinds.propose import proposal_record

PROPOSAL_TEXT = (
    "<type>bar chart</type><caption>Three bars: red 2, blue 5, green 3.</caption>"
    "<easy_question>What colour is the tallest bar?</easy_question><easy_answer>blue</easy_answer>"
    "<hard_question>How many bars are there?</hard_question><hard_answer>3</hard_answer>"
)
PROPOSED = proposal_record("coder0", "charts", "sha256:proposer", PROPOSAL_TEXT)
VOTES = {
    "question": "How many bars are there?",
    "label": "3",
    "hard_consistency": 0.5,
    "vote_margin": 0.2,
    "easy_score": 1.0,
    "hard_answers": ["3", "4", None, "3"],
    "easy_answers": ["blue", "blue", "blue", "blue"],
    "dropped": None,
    "labelled_by": "sha256:solver",
}
ANSWER = {
    "model": "solver",
    "producer": "sha256:solver",
    "question": "How many bars are there?",
    "truth": "3",
    "response": "<think>count</think> \\boxed{3}",
    "answer": "3",
    "formatted": True,
    "failure": None,
    "outcome": "correct",
}
SOLVER_ITEM = {
    "id": "solver0",
    "image": "images/solver0.png",
    "proposal": PROPOSED["proposal"],
    "drawn_by": "sha256:coder",
    **VOTES,
}
EXAMPLES: dict[str, dict[str, Any]] = {
    keys.PROPOSALS_FOR_CODER: PROPOSED,
    keys.PROPOSALS_FOR_SOLVER: {**PROPOSED, "id": "solver0", "proposal": None,
                                "parse_failure": "missing <caption>"},
    keys.CODER_TRAIN_SET: {"id": "coder0", "producer": "sha256:proposer",
                           "proposal": PROPOSED["proposal"]},
    keys.RENDERS: {"id": "coder0", "reasons": ["ok", "timeout", "ok", "no_svg"], "dropped": None},
    keys.DRAWS: {"id": "solver0", "render": "ok"},
    keys.CANDIDATES: {**SOLVER_ITEM, "dropped": "hard_too_consistent"},
    keys.SOLVER_TRAIN_SET: SOLVER_ITEM,
    keys.PROBES: {"id": "probe-procedural-s7-i2000000", "chart": "bar", "skill": "count",
                  "truth": "3", "label_correct": True, **VOTES},
    keys.REWARDS: {"step": 1, "id": "s1-0-seed3-r0", "group": "s1-0-seed3", "topic": "charts",
                   "reward": 0.75, "terms": {"base": 0.5, "format": 1.0, "num_rendered": 4},
                   "response": PROPOSAL_TEXT, "proposal": PROPOSED["proposal"],
                   "parse_failure": None},
    keys.STEPS: {"kind": "step", "step": 1, "reward/mean": 0.25, "groups/total": 4.0,
                 "groups/zero_variance": 1.0, "loss/policy": -0.01},
    keys.EVAL_RESULTS: {"id": "solver-procedural-s7-i1-hard", "item": "procedural-s7-i1",
                        "question_kind": "hard", "skill": "count", **ANSWER},
    keys.PREDICTIONS: {"id": "solver-chartqa-1", "benchmark": "chartqa", "item": "chartqa-1",
                       "choices": ["2", "3"], "image_sha256": "ab" * 32, **ANSWER,
                       "grader_outcome": "wrong", "judge_verdict": "yes"},
}  # fmt: skip
"""One row per table file name (`tables.TABLES`), with the fields its stage writes."""


@pytest.fixture
def table_row() -> Callable[..., dict[str, Any]]:
    """`table_row(name, **fields)`: a valid row of table `name`, with `fields` replaced."""

    def build(name: str, **fields: Any) -> dict[str, Any]:
        return {**copy.deepcopy(EXAMPLES[name]), **fields}

    return build
