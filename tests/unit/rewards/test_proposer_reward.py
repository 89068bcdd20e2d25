"""The Proposer reward, every term against hand-worked cases (reference §5.3, §13.9, §13.10, §15).

Defaults: N = 4 Coder samples, K = 5 Solver answers, cap 0.5, r_eh 0.15/0.3, r_ct 0.15/0.5,
r_div lambda 0.5 with weights 0.45/0.20/0.35.
"""

from __future__ import annotations

import random

import pytest

from mmzero_runtime.rewards.answers import text_grade
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeResult, GradeTable
from mmzero_runtime.rewards.judgement import SolverAnswers
from mmzero_runtime.rewards.proposer import (
    CoderSample,
    Proposal,
    ProposerReward,
    proposer_grade_requests,
    proposer_rewards,
)
from mmzero_runtime.spec import ProposerRewardSpec

SPEC = ProposerRewardSpec()


def proposal(item_id: str, content_type: str = "table", caption: str | None = None) -> Proposal:
    """A parsed proposal whose texts share no token with any other (no diversity penalty)."""
    return Proposal(
        item_id,
        parsed=True,
        content_type=content_type,
        caption=caption or f"caption-{item_id}",
        easy_question=f"easy-{item_id}",
        easy_answer="3",
        hard_question=f"hard-{item_id}",
    )


def image(correct: int, hard: tuple[str | None, ...], k: int = 5) -> SolverAnswers:
    """`correct` of k easy answers equal to "3" (the rest "4"), and the given hard answers."""
    return SolverAnswers(easy=("3",) * correct + ("4",) * (k - correct), hard=hard)


def samples(item_id: str, *images: SolverAnswers | None) -> list[CoderSample]:
    """N = 4 samples: the given images rendered, the rest failed renders."""
    drawn = [CoderSample(item_id, i, True, answers) for i, answers in enumerate(images)]
    failed = [CoderSample(item_id, i, False) for i in range(len(images), SPEC.coder_samples)]
    return drawn + failed


def reward_of(
    proposals: list[Proposal], coder: list[CoderSample], **spec: object
) -> list[ProposerReward]:
    return proposer_rewards(
        proposals, coder, spec=ProposerRewardSpec.model_validate(spec), grades=text_grade
    )


def test_proposer_reward_worked_example_matches_hand_arithmetic() -> None:
    # image 0: s = 5/5 -> capped 0.5; hard a,a,a,b,c -> c = 0.6, d = 0.4
    # image 1: s = 2/5 = 0.4; hard all distinct -> c = 0.2, d = 0.2; images 2, 3 fail to render
    # base = (0.5 + 0.4 + 0.4 + 0.2) / 4 = 0.375; mean d = 0.3 >= 0.15: no r_eh;
    # M = 1: no r_ct, no r_div
    coder = samples("p", image(5, ("a", "a", "a", "b", "c")), image(2, ("a", "b", "c", "d", "e")))
    (reward,) = reward_of([proposal("p")], coder)
    assert reward.total == pytest.approx(0.375)
    assert (reward.base, reward.avg_solvability, reward.avg_difficulty) == pytest.approx(
        (0.375, 0.7, 0.3)
    )
    assert (reward.num_rendered, reward.num_measured, reward.num_rollouts) == (2, 2, 4)


@pytest.mark.parametrize(
    ("images", "total", "easy_hard"),
    [
        ((), 0.0, 0.0),  # all renders fail: base 0, and no render means no r_eh
        ((image(5, (None,) * 5),), -0.175, -0.3),  # all hard answers "no box": c = 0, d = 0
        # ^ base = (0.5 + 0) / 4 = 0.125; mean d = 0 < 0.15 -> -0.3; total -0.175
        ((image(5, ("None",) * 5),), -0.175, -0.3),  # literal "None" is no vote either
        ((image(5, ("a",) * 5),), -0.175, -0.3),  # c = 1, d = 0: too easy, same sum
        ((image(1, ("a", "a", "b", "b", "c")),) * 4, 0.6, 0.0),  # s 0.2, d 0.4 each: (0.2+0.4)*4/4
    ],
    ids=["no-render", "hard-all-missing", "hard-all-None", "hard-unanimous", "all-render"],
)
def test_proposer_reward_edge_cases_give_hand_totals(
    images: tuple[SolverAnswers, ...], total: float, easy_hard: float
) -> None:
    (reward,) = reward_of([proposal("p")], samples("p", *images))
    assert (reward.total, reward.easy_hard_penalty) == pytest.approx((total, easy_hard))


def test_proposer_reward_mean_difficulty_exactly_at_threshold_no_penalty() -> None:
    # §15 float edge: K = 10, hard consistencies 9/10 and 8/10 -> d = 0.1 and 0.2; the exact
    # mean is 0.15, not below 0.15, so no penalty (the reference's float sum gave
    # 0.14999999999999997 and applied -0.3). base = (0.5 + 0.1 + 0.5 + 0.2) / 4 = 0.325.
    hard_9 = ("a",) * 9 + ("b",)
    hard_8 = ("a",) * 8 + ("b", "c")
    coder = samples("p", image(10, hard_9, k=10), image(10, hard_8, k=10))
    (reward,) = reward_of([proposal("p")], coder, solver_samples=10)
    assert (reward.easy_hard_penalty, reward.total) == pytest.approx((0.0, 0.325))


def test_proposer_reward_parse_failure_is_minus_one() -> None:
    rewards = reward_of([Proposal("bad", parsed=False), proposal("p")], samples("p"))
    assert (rewards[0].total, rewards[0].format, rewards[1].format) == (-1.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("types", "penalty"),
    [
        (["table", "table", "map", "diagram"], 0.0),  # f = 2/4 = 0.5: exactly at phi, no penalty
        (["table", "table", "table", "map"], -0.075),  # f = 0.75: -0.15 * 0.25 / 0.5
        (["table"] * 4, 0.0),  # one type only: r_ct is not applied (M > 1 but 1 type)
    ],
    ids=["at-threshold", "above", "single-type"],
)
def test_proposer_reward_content_type_share_penalises_majority(
    types: list[str], penalty: float
) -> None:
    proposals = [proposal(f"p{i}", kind) for i, kind in enumerate(types)]
    coder = [s for p in proposals for s in samples(p.item_id)]
    rewards = reward_of(proposals, coder)
    assert rewards[0].content_type_penalty == pytest.approx(penalty)
    assert rewards[0].total == pytest.approx(penalty)  # nothing renders: base 0


def test_proposer_reward_content_type_share_counts_only_valid_proposals() -> None:
    # 2 tables among M = 3 valid (the unparsed one is not counted): f = 2/3 ->
    # -0.15 * (2/3 - 1/2) / (1/2) = -0.05
    proposals = [proposal("a"), proposal("b"), proposal("c", "map"), Proposal("x", False)]
    coder = [s for p in proposals[:3] for s in samples(p.item_id)]
    assert reward_of(proposals, coder)[0].content_type_penalty == pytest.approx(-0.05)


def test_proposer_reward_duplicate_caption_costs_0_225() -> None:
    # Captions of p0 and p1 identical: k_caption = 2 -> -min(0.5, 0.5 * 0.45 * (2 - 1)) = -0.225
    proposals = [
        proposal("p0", caption="a bar chart"),
        proposal("p1", caption="a bar chart"),
        proposal("p2", "map"),
    ]
    coder = [s for p in proposals for s in samples(p.item_id)]
    assert [r.diversity for r in reward_of(proposals, coder)] == pytest.approx(
        [-0.225, -0.225, 0.0]
    )


def test_proposer_reward_single_valid_proposal_has_no_batch_terms() -> None:
    (reward,) = reward_of([proposal("p")], samples("p"))
    assert (reward.content_type_penalty, reward.diversity) == (0.0, 0.0)


def test_proposer_reward_solver_failure_is_not_a_difficulty() -> None:
    # §13.10: image 1's Solver call failed. It leaves the mean (N' = 3), it is not c = -1.
    # image 0: s 0.5 (capped from 1), d 0.4; base = 0.9 / 3 = 0.3; 2 failed renders count 0.
    coder = samples("p", image(5, ("a", "a", "a", "b", "c")), None)
    (reward,) = reward_of([proposal("p")], coder)
    assert (reward.total, reward.num_rendered, reward.num_measured) == pytest.approx((0.3, 2, 1))


def test_proposer_reward_every_solver_call_failed_is_none() -> None:
    # N' = 4 - 4 unmeasured = 0: nothing is known about the proposal.
    (reward,) = reward_of([proposal("p")], samples("p", None, None, None, None))
    assert reward.total is None


def test_proposer_reward_solver_failures_beside_failed_renders_score_zero() -> None:
    # 2 Solver failures leave N' = 2, both failed renders: base 0 / 2 = 0, a known 0.
    (reward,) = reward_of([proposal("p")], samples("p", None, None))
    assert reward.total == 0.0


def test_proposer_reward_grading_failure_leaves_the_denominator() -> None:
    # easy answers 3, 3, x, x, x against "3"; x vs 3 timed out -> s = 2/2 = 1 (not 2/5).
    grades = GradeTable([GradeResult("p", "x", "3", "timeout")])
    answers = SolverAnswers(easy=("3", "3", "x", "x", "x"), hard=("a",) * 5)
    (reward,) = proposer_rewards([proposal("p")], samples("p", answers), spec=SPEC, grades=grades)
    assert reward.avg_solvability == 1.0


def test_proposer_reward_samples_joined_by_id_not_position() -> None:
    proposals = [proposal("p0"), proposal("p1", "map")]
    coder = samples("p0", image(5, ("a", "a", "b", "b", "c"))) + samples("p1")
    shuffled = random.Random(0).sample(coder, len(coder))
    assert reward_of(proposals, shuffled) == reward_of(proposals, coder)


@pytest.mark.parametrize(
    ("coder", "message"),
    [
        (samples("p")[:3], r"indices \[0, 1, 2\], expected 0..3"),  # a sample missing
        ([*samples("p"), CoderSample("p", 0, False)], r"indices \[0, 0, 1, 2, 3\]"),  # duplicate
        ([*samples("p"), CoderSample("q", 0, False)], "q/0 names no parsed proposal"),  # stranger
        (samples("p", image(5, ("a",) * 4)), "got 5 easy and 4 hard"),  # short answer list
    ],
    ids=["missing", "duplicate", "unknown-id", "short-answers"],
)
def test_proposer_reward_broken_join_raises(coder: list[CoderSample], message: str) -> None:
    with pytest.raises(RewardError, match=message):
        reward_of([proposal("p")], coder)


def test_proposer_grade_requests_cover_every_lookup() -> None:
    coder = samples("p", SolverAnswers(("0.5", "3", None, "1/2", "3"), ("a", "b", "a", None, "A")))
    requests = proposer_grade_requests([proposal("p")], coder)
    assert [(r.item_id, r.answer, r.reference) for r in requests] == [
        ("p", "0.5", "3"),  # "3" settles in-process, no-box is wrong: only these two remain
        ("p", "1/2", "3"),
        ("p", "a", "b"),  # one vote pair of distinct hard answers
    ]
    grades = GradeTable(GradeResult(r.item_id, r.answer, r.reference, "wrong") for r in requests)
    proposer_rewards([proposal("p")], coder, spec=SPEC, grades=grades)  # no missing lookup
