"""What the Proposer GRPO stage hands the reward (the content type r_ct counts, reference §5.3)
and the order it takes the seed prompts in."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzero_runtime.rewards.answers import text_grade
from mmzero_runtime.rewards.proposer import CoderSample, proposer_rewards
from mmzero_runtime.roles import parse_proposal
from mmzero_runtime.spec import MMZeroRun, ProposerRewardSpec, RunSpec
from mmzero_runtime.stages.execution.runner import find_stage
from mmzero_runtime.stages.kinds.proposer_grpo import _reward_proposal, seed_prompts
from mmzero_runtime.stages.process.context import StageContext
from mmzero_runtime.storage.store import LocalStore


def response(content_type: str | None, caption: str) -> str:
    """A Proposer reply with every required tag; `content_type` None leaves that tag out."""
    tag = "" if content_type is None else f"<content_type>{content_type}</content_type>"
    return (
        f"{tag}<caption>{caption}</caption><easy_question>q</easy_question>"
        "<easy_answer>3</easy_answer><hard_question>h</hard_question><hard_answer>4</hard_answer>"
    )


@pytest.mark.parametrize(
    ("declared", "caption", "expected"),
    [
        # declared and listed: kept, whatever the caption says
        pytest.param("map", "A bar chart of rainfall", "map", id="declared-kept"),
        # an unknown type is read from the caption, as the reference does
        pytest.param("pie", "A pie chart of energy use", "data_chart", id="unknown-classified"),
        # no tag at all: read from the caption
        pytest.param(None, "A timeline of launches", "timeline", id="missing-classified"),
        # declared `other` with a caption naming no kind stays `other`
        pytest.param("other", "Energy use by household", "other", id="other-stays"),
    ],
)
def test_reward_proposal_declared_other_is_classified_from_caption(
    declared: str | None, caption: str, expected: str
) -> None:
    proposal = _reward_proposal("p", parse_proposal(response(declared, caption)))
    assert proposal.content_type == expected


def test_reward_proposal_type_written_six_ways_is_one_type_for_r_ct() -> None:
    # Six bar-chart proposals declare their type six ways, two tables declare `table`. Every
    # chart counts as data_chart, share 6/8: r_ct = -0.15 * (0.75 - 0.5) / 0.5 = -0.075 each.
    spellings = ["data_chart", "Data Chart", "datachart", None, "bar graph", "other"]
    replies = [response(s, f"A bar chart of item {i}") for i, s in enumerate(spellings)]
    replies += [response("table", f"A table of item {i}") for i in (6, 7)]
    proposals = [_reward_proposal(f"p{i}", parse_proposal(r)) for i, r in enumerate(replies)]
    coder = [
        CoderSample(p.item_id, j, False)
        for p in proposals
        for j in range(ProposerRewardSpec().coder_samples)
    ]
    spec = ProposerRewardSpec(diversity_weight=0.0)
    rewards = proposer_rewards(proposals, coder, spec=spec, grades=text_grade)
    assert [r.content_type_penalty for r in rewards] == pytest.approx([-0.075] * 6 + [0.0] * 2)


def test_seed_prompts_reshuffled_each_iteration_and_equal_on_rerun(tmp_path: Path) -> None:
    # the reference replayed one order every iteration (data seed 1, §13.18)
    run = MMZeroRun(spec=RunSpec(iterations=2))
    store = LocalStore(tmp_path)

    def order(iteration: int) -> list[tuple[str, str]]:
        return seed_prompts(StageContext(run, store, find_stage(run, "proposer-grpo", iteration)))

    first, second = order(1), order(2)
    assert sorted(first) == sorted(second) and first != second
    assert order(1) == first
