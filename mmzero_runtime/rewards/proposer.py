"""The Proposer reward (reference §5.3): capped solvability plus Goldilocks difficulty over the
frozen Coder's N renders, a too-easy penalty, a content-type penalty and BLEU-cluster diversity.

Batch terms (content type, diversity) use the whole step batch, GRPO siblings included. Coder
samples are joined to proposals by id, never by position (fixing §13.9); a Solver failure on an
image is a missing measurement, never a difficulty of -1 (fixing §13.10).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mmzero_runtime.rewards.answers import Grades
from mmzero_runtime.rewards.diversity import Texts, diversity_terms
from mmzero_runtime.rewards.errors import RewardError
from mmzero_runtime.rewards.grading import GradeRequest
from mmzero_runtime.rewards.judgement import (
    ImageScore,
    SolverAnswers,
    exact,
    image_grade_requests,
    mean,
    score_image,
)
from mmzero_runtime.spec import ProposerRewardSpec


@dataclass(frozen=True)
class Proposal:
    """One Proposer response of the step batch, as parsed by the roles package."""

    item_id: str
    parsed: bool
    """False when any required field failed to parse: the reward is `parse_failure_reward`."""
    content_type: str = "other"
    """Normalised content type (spec.CONTENT_TYPES), already classified."""
    caption: str = ""
    easy_question: str = ""
    easy_answer: str = ""
    hard_question: str = ""


@dataclass(frozen=True)
class CoderSample:
    """One of the N frozen-Coder drawings of a proposal, and what the Solver said about it."""

    proposal_id: str
    sample_index: int
    """0 .. N-1; with `proposal_id` it names the sample."""
    rendered: bool
    answers: SolverAnswers | None = None
    """The Solver's answers on the render; None with `rendered` means the Solver failed here
    (counted by the stage as a generation failure; the image is left out of the mean)."""


@dataclass(frozen=True)
class ProposerReward:
    """Every term of one proposal's reward; names follow the reference's logged keys."""

    item_id: str
    total: float | None
    """R(x) (`overall`); None when no image could be measured (all Solver calls failed)."""
    format: float
    """1 when the response parsed, else 0."""
    base: float
    """(1/N') · sum over measured renders of min(s, cap) + g(c); N' = N - unmeasured."""
    avg_solvability: float
    """Mean uncapped s over measured renders (0 with none)."""
    avg_difficulty: float
    """Mean g(c) over measured renders (0 with none)."""
    easy_hard_penalty: float
    """r_eh: -lambda_eh when that mean difficulty is below delta_eh, else 0."""
    content_type_penalty: float
    """r_ct (logged as `content_type_diversity_bonus` in the reference)."""
    diversity: float
    """r_div (logged as `caption_diversity_bonus` in the reference)."""
    num_rendered: int
    num_measured: int
    num_rollouts: int


def _samples_by_proposal(
    proposals: Sequence[Proposal], samples: Sequence[CoderSample], n: int
) -> dict[str, list[CoderSample]]:
    """Join samples to parsed proposals by id; refuse any gap, duplicate or stranger."""
    repeated = [
        item_id for item_id, count in Counter(p.item_id for p in proposals).items() if count > 1
    ]
    if repeated:
        raise RewardError(
            f"proposal ids {repeated[:5]} occur more than once in the batch; "
            "every response needs its own id"
        )
    parsed = {p.item_id for p in proposals if p.parsed}
    joined: dict[str, list[CoderSample]] = defaultdict(list)
    for sample in samples:
        if sample.proposal_id not in parsed:
            raise RewardError(
                f"Coder sample {sample.proposal_id}/{sample.sample_index} names no parsed "
                "proposal of this batch; samples must carry the id of the proposal they drew"
            )
        joined[sample.proposal_id].append(sample)
    for item_id in parsed:
        indices = sorted(s.sample_index for s in joined[item_id])
        if indices != list(range(n)):
            raise RewardError(
                f"proposal {item_id}: Coder sample indices {indices}, expected 0..{n - 1} "
                f"(coder_samples={n}); send every sample once, a failed one with rendered=False"
            )
        joined[item_id].sort(key=lambda s: s.sample_index)
    return joined


def _content_type_penalties(
    proposals: Sequence[Proposal], spec: ProposerRewardSpec
) -> dict[str, Fraction]:
    """r_ct per content type over the M valid proposals; none unless M > 1 and >= 2 types."""
    types = Counter(p.content_type for p in proposals if p.parsed)
    valid = sum(types.values())
    if valid < 2 or len(types) < 2:
        return {}
    phi, weight = exact(spec.content_type_threshold), exact(spec.content_type_weight)
    return {
        kind: -weight * max(Fraction(0), Fraction(count, valid) - phi) / (1 - phi)
        for kind, count in types.items()
    }


def _measure(
    proposal: Proposal, samples: list[CoderSample], spec: ProposerRewardSpec, grades: Grades
) -> tuple[int, list[ImageScore], int]:
    """(rendered, scores of measured renders, unmeasured renders) of one proposal."""
    rendered = [s for s in samples if s.rendered]
    scores: list[ImageScore] = []
    for sample in rendered:
        score = None
        if sample.answers is not None:
            score = score_image(
                f"{proposal.item_id}/{sample.sample_index}",
                sample.answers,
                proposal.easy_answer,
                samples=spec.solver_samples,
                grades=grades,
            )
        if score is not None:
            scores.append(score)
    return len(rendered), scores, len(rendered) - len(scores)


def _parse_failure(item_id: str, spec: ProposerRewardSpec) -> ProposerReward:
    return ProposerReward(
        item_id=item_id,
        total=spec.parse_failure_reward,
        format=0.0,
        base=0.0,
        avg_solvability=0.0,
        avg_difficulty=0.0,
        easy_hard_penalty=0.0,
        content_type_penalty=0.0,
        diversity=0.0,
        num_rendered=0,
        num_measured=0,
        num_rollouts=0,
    )


def _reward(
    proposal: Proposal,
    samples: list[CoderSample],
    extra: tuple[Fraction, float],
    spec: ProposerRewardSpec,
    grades: Grades,
) -> ProposerReward:
    """One valid proposal's reward; `extra` = (r_ct, r_div) from the batch."""
    content_type_penalty, diversity = extra
    rendered, scores, unmeasured = _measure(proposal, samples, spec, grades)
    cap = exact(spec.solvability_cap)
    denominator = len(samples) - unmeasured  # N': failed renders stay in, as 0
    base = sum((min(s.solvability, cap) + s.difficulty for s in scores), Fraction(0))
    base = base / denominator if denominator else Fraction(0)
    difficulty = mean([s.difficulty for s in scores])
    # The mean is exact, so difficulties 0.1 and 0.2 average to exactly 0.15, which is not
    # below 0.15: no penalty. The reference's float sum gives 0.14999999999999997 and applies
    # it (§15); "below the threshold" is the rule, the reference's side is a rounding accident.
    too_easy = bool(scores) and difficulty < exact(spec.easy_hard_threshold)
    easy_hard = -exact(spec.easy_hard_penalty) if too_easy else Fraction(0)
    exact_part = base + easy_hard + content_type_penalty
    return ProposerReward(
        item_id=proposal.item_id,
        total=float(exact_part) + diversity if denominator else None,
        format=1.0,
        base=float(base),
        avg_solvability=float(mean([s.solvability for s in scores])),
        avg_difficulty=float(difficulty),
        easy_hard_penalty=float(easy_hard),
        content_type_penalty=float(content_type_penalty),
        diversity=diversity,
        num_rendered=rendered,
        num_measured=len(scores),
        num_rollouts=len(samples),
    )


def proposer_rewards(
    proposals: Sequence[Proposal],
    samples: Sequence[CoderSample],
    *,
    spec: ProposerRewardSpec,
    grades: Grades,
) -> list[ProposerReward]:
    """Rewards of a whole Proposer step batch, in the order of `proposals` (§5.3).

    R(x) = (1/N) · sum_{j rendered} [min(s_j, tau_s) + g(c_j)] + r_eh + r_ct + r_div, or
    `parse_failure_reward` when x did not parse. Failed renders count 0 inside the 1/N; a
    render the Solver failed on leaves N (it is unknown, not 0), and with none left R is None.

    >>> from mmzero_runtime.rewards.answers import text_grade
    >>> spec = ProposerRewardSpec(coder_samples=2, solver_samples=2)
    >>> proposals = [Proposal("p1", True, "table", "a table of fruit prices", "price of apples?",
    ...                       "3", "cheapest fruit?"), Proposal("p2", parsed=False)]
    >>> samples = [CoderSample("p1", 0, True, SolverAnswers(("3", "3"), ("pear", "fig"))),
    ...            CoderSample("p1", 1, rendered=False)]
    >>> reward = proposer_rewards(proposals, samples, spec=spec, grades=text_grade)[0]
    >>> reward.total, reward.base, reward.avg_solvability, reward.avg_difficulty
    (0.5, 0.5, 1.0, 0.5)
    """
    joined = _samples_by_proposal(proposals, samples, spec.coder_samples)
    valid = [p for p in proposals if p.parsed]
    penalties = _content_type_penalties(proposals, spec)
    texts = [Texts(p.caption, p.easy_question, p.hard_question) for p in valid]
    diversity = dict(zip((p.item_id for p in valid), diversity_terms(texts, spec), strict=True))
    return [
        _reward(
            p,
            joined[p.item_id],
            (penalties.get(p.content_type, Fraction(0)), diversity[p.item_id]),
            spec,
            grades,
        )
        if p.parsed
        else _parse_failure(p.item_id, spec)
        for p in proposals
    ]


def proposer_grade_requests(
    proposals: Sequence[Proposal], samples: Sequence[CoderSample]
) -> list[GradeRequest]:
    """Every comparison `proposer_rewards` will look up, tagged with the proposal id."""
    easy_answers = {p.item_id: p.easy_answer for p in proposals if p.parsed}
    requests: list[GradeRequest] = []
    for sample in samples:
        if sample.rendered and sample.answers is not None and sample.proposal_id in easy_answers:
            requests += image_grade_requests(
                sample.proposal_id, sample.answers, easy_answers[sample.proposal_id]
            )
    return requests
