"""The Coder reward (reference §5.4): 1 + s + g(c) when the SVG renders, a small penalty when it
does not, floored.

s (solvability of the easy question on the render) is not capped here, unlike in the Proposer
reward, and its denominator counts every Solver sample, those without a box included; a sample
whose grading failed (timeout, crash) is neither right nor wrong and leaves the denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mmzero_runtime.rewards.answers import Grades
from mmzero_runtime.rewards.grading import GradeRequest
from mmzero_runtime.rewards.judgement import SolverAnswers, exact, image_grade_requests, score_image
from mmzero_runtime.spec import CoderRewardSpec


@dataclass(frozen=True)
class CoderResponse:
    """One Coder response and what became of it."""

    item_id: str
    extracted: bool
    """Code could be extracted from the response (False: the "syntax error" case)."""
    svg_markup: bool
    """The code is SVG markup: starts with "<" or contains "<svg"."""
    rendered: bool
    easy_answer: str
    """The proposal's easy answer a_e, which the Solver's easy answers are graded against."""
    answers: SolverAnswers | None = None
    """The judging Solver's K answers on the render; None with `rendered` means the Solver
    failed (a generation failure, counted by the stage; the reward is then None)."""


@dataclass(frozen=True)
class CoderReward:
    """Every term of one Coder response's reward; names follow the reference's logged keys."""

    item_id: str
    total: float | None
    """R (`overall`), floored; None when the render could not be judged."""
    renderability: float
    solvability: float
    """s, uncapped (0 when not rendered)."""
    difficulty: float
    """g(c) on the hard question (0 when not rendered)."""
    type_compliant: float
    """1 when the code is SVG markup."""
    penalty: float
    """The subtracted no-render, syntax and wrong-type penalties."""


def _penalty(response: CoderResponse, spec: CoderRewardSpec) -> Fraction:
    syntax = Fraction(0) if response.extracted else exact(spec.syntax_error_penalty)
    wrong_type = Fraction(0) if response.svg_markup else exact(spec.wrong_type_penalty)
    no_render = Fraction(0) if response.rendered else exact(spec.no_render_penalty)
    return no_render + syntax + wrong_type


def coder_rewards(
    responses: Sequence[CoderResponse], *, spec: CoderRewardSpec, grades: Grades
) -> list[CoderReward]:
    """Rewards of a Coder batch, in the order of `responses` (§5.4).

    Rendered: R = 1 + s + g(c) - 0.05·syntax - 0.5·(1 - svg); otherwise
    R = -(0.1 + 0.05·syntax + 0.5·(1 - svg)); then R = max(R, floor).

    >>> from mmzero_runtime.rewards.answers import text_grade
    >>> spec = CoderRewardSpec(solver_samples=2)
    >>> drawn = CoderResponse("c1", True, True, True, "3", SolverAnswers(("3", None), ("a", "b")))
    >>> broken = CoderResponse("c2", True, True, False, "3")
    >>> empty = CoderResponse("c3", False, False, False, "3")
    >>> [r.total for r in coder_rewards([drawn, broken, empty], spec=spec, grades=text_grade)]
    [2.0, -0.1, -0.5]
    """
    rewards = []
    for response in responses:
        penalty = _penalty(response, spec)
        score = None
        if response.rendered and response.answers is not None:
            score = score_image(
                response.item_id,
                response.answers,
                response.easy_answer,
                samples=spec.solver_samples,
                grades=grades,
            )
        solvability = score.solvability if score else Fraction(0)
        difficulty = score.difficulty if score else Fraction(0)
        gain = 1 + solvability + difficulty if response.rendered else Fraction(0)
        total = max(gain - penalty, exact(spec.floor))
        judged = score is not None or not response.rendered
        rewards.append(
            CoderReward(
                item_id=response.item_id,
                total=float(total) if judged else None,
                renderability=float(response.rendered),
                solvability=float(solvability),
                difficulty=float(difficulty),
                type_compliant=float(response.svg_markup),
                penalty=float(penalty),
            )
        )
    return rewards


def coder_grade_requests(responses: Sequence[CoderResponse]) -> list[GradeRequest]:
    """Every comparison `coder_rewards` will look up, tagged with the response id."""
    return [
        request
        for r in responses
        if r.rendered and r.answers is not None
        for request in image_grade_requests(r.item_id, r.answers, r.easy_answer)
    ]
