"""The Coder reward against hand-worked cases (reference §5.4)."""

from __future__ import annotations

import pytest

from mmzero_runtime.rewards.answers import text_grade
from mmzero_runtime.rewards.coder import CoderResponse, coder_grade_requests, coder_rewards
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.judgement import SolverAnswers
from mmzero_runtime.spec import CoderRewardSpec

SPEC = CoderRewardSpec()
UNANIMOUS = ("a",) * 5  # c = 1 -> g(c) = 0


def response(
    rendered: bool = True,
    easy: tuple[str | None, ...] = ("3",) * 5,
    hard: tuple[str | None, ...] = UNANIMOUS,
    extracted: bool = True,
    svg: bool = True,
) -> CoderResponse:
    """A Coder response judged by K = 5 Solver answers (easy answer "3")."""
    answers = SolverAnswers(easy, hard) if rendered else None
    return CoderResponse("c", extracted, svg, rendered, "3", answers)


@pytest.mark.parametrize(
    ("case", "total"),
    [
        (response(), 2.0),  # renders, s = 5/5 uncapped, c = 1 -> d = 0: 1 + 1 + 0
        (response(hard=("a", "a", "a", "b", "c")), 2.4),  # c = 3/5 -> d = 0.4: 1 + 1 + 0.4
        (response(easy=("3", None, None, None, None)), 1.2),  # no box counts in K: s = 1/5
        (response(easy=("4",) * 5, hard=(None,) * 5), 1.0),  # s = 0, no hard vote -> c = 0, d = 0
        (response(rendered=False), -0.1),  # SVG that fails to render: -0.1
        (response(rendered=False, svg=False), -0.5),  # not SVG: -(0.1 + 0.5) = -0.6 -> floor -0.5
        (response(rendered=False, extracted=False, svg=False), -0.5),  # nothing: -0.65 -> -0.5
    ],
    ids=["perfect", "goldilocks", "no-box", "all-wrong", "no-render", "wrong-type", "empty"],
)
def test_coder_reward_table_gives_hand_total(case: CoderResponse, total: float) -> None:
    (reward,) = coder_rewards([case], spec=SPEC, grades=text_grade)
    assert reward.total == pytest.approx(total)


def test_coder_reward_terms_reported_beside_total() -> None:
    (reward,) = coder_rewards(
        [response(hard=("a", "a", "a", "b", "c"))], spec=SPEC, grades=text_grade
    )
    terms = (reward.renderability, reward.solvability, reward.difficulty, reward.type_compliant)
    assert terms == pytest.approx((1.0, 1.0, 0.4, 1.0)) and reward.penalty == 0.0


def test_coder_reward_lower_floor_keeps_full_penalty() -> None:
    # -(0.1 + 0.05 + 0.5) = -0.65, above a floor of -1.0: not clipped.
    spec = CoderRewardSpec(floor=-1.0)
    case = response(rendered=False, extracted=False, svg=False)
    assert coder_rewards([case], spec=spec, grades=text_grade)[0].total == pytest.approx(-0.65)


def test_coder_reward_solver_failure_is_none() -> None:
    case = CoderResponse("c", True, True, True, "3", answers=None)
    assert coder_rewards([case], spec=SPEC, grades=text_grade)[0].total is None


def test_coder_reward_wrong_answer_count_raises() -> None:
    with pytest.raises(RewardError, match="item c: got 4 easy and 5 hard"):
        coder_rewards([response(easy=("3",) * 4)], spec=SPEC, grades=text_grade)


def test_coder_grade_requests_unrendered_response_needs_none() -> None:
    cases = [response(easy=("0.5",) * 5), response(rendered=False)]
    assert len(coder_grade_requests(cases)) == 5  # 5 easy answers; hard answers unanimous
