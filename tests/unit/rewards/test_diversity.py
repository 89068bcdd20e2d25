"""The BLEU-cluster diversity term (reference §5.3 step 6, §11)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mmzero_runtime.rewards.diversity import (
    Texts,
    bleu,
    cluster_sizes,
    distance_matrix,
    diversity_terms,
)
from mmzero_runtime.spec import ProposerRewardSpec

CAPTIONS = [
    "a bar chart of monthly rainfall in three cities with labelled axes",
    "a bar chart of monthly rainfall in three cities with labelled bars",  # near duplicate
    "a timeline of the roman emperors from augustus to nero",
    "a right triangle with legs three and four and a marked hypotenuse",
]


def unique(i: int, caption: str | None = None) -> Texts:
    """Texts sharing no token with any other `unique(j)`, unless a caption is given."""
    return Texts(caption or f"caption{i}", f"easy{i}", f"hard{i}")


def test_bleu_identical_short_texts_score_one() -> None:
    # NLTK alone gives "a b" vs "a b" 0.316 (no 3- or 4-grams): duplicates must still cluster.
    assert bleu(["a", "b"], ["a", "b"]) == 1.0


def test_distance_matrix_captions_symmetric_zero_diagonal() -> None:
    distances = distance_matrix(CAPTIONS)
    assert np.allclose(distances, distances.T) and np.all(np.diag(distances) == 0)


def test_cluster_sizes_near_duplicate_captions_share_cluster() -> None:
    assert cluster_sizes(CAPTIONS, 0.25) == [2, 2, 1, 1]


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], []),  # empty batch
        ([unique(0)], [0.0]),  # M = 1: one proposal is its own cluster
        ([unique(i) for i in range(4)], [0.0] * 4),  # all distinct: no penalty
        ([unique(0, "same caption"), unique(1, "same caption"), unique(2)], [-0.225, -0.225, 0.0]),
        # ^ one duplicate caption: -min(0.5, 0.5 * 0.45 * (2 - 1)) = -0.225
        ([Texts("same", "same", "same")] * 3, [-0.5] * 3),
        # ^ triplicate in every field: 0.5 * (0.45 + 0.20 + 0.35) * 2 = 1.0 -> clipped to -0.5
        ([Texts("c", "same", "q0"), Texts("c2", "same", "q1")], [-0.1, -0.1]),
        # ^ duplicate easy question only: 0.5 * 0.20 * 1 = 0.1
    ],
    ids=["empty", "one", "distinct", "dup-caption", "clipped", "dup-easy-q"],
)
def test_diversity_terms_penalty_mode_hand_values(
    texts: list[Texts], expected: list[float]
) -> None:
    assert diversity_terms(texts, ProposerRewardSpec()) == pytest.approx(expected)


def test_diversity_terms_bonus_mode_rewards_rare_proposals() -> None:
    # Captions {0, 1} duplicate, 2 and 3 unique: M = 4, C = 3 clusters, average size 4/3.
    # Duplicates: 0.5 * 0.45 * (2 - 4/3) = 0.15 penalty; singletons: 0.5 * 0.45 * (1 - 4/3) =
    # -0.075, i.e. a +0.075 bonus. Other fields all unique: C = M, k - M/C = 0.
    texts = [unique(0, "same caption"), unique(1, "same caption"), unique(2), unique(3)]
    spec = ProposerRewardSpec(diversity_mode="penalty_and_bonus")
    assert diversity_terms(texts, spec) == pytest.approx([-0.15, -0.15, 0.075, 0.075])


def test_diversity_terms_bonus_mode_all_distinct_is_zero() -> None:
    spec = ProposerRewardSpec(diversity_mode="penalty_and_bonus")
    assert diversity_terms([unique(i) for i in range(3)], spec) == [0.0] * 3


def test_diversity_terms_batch_order_does_not_change_a_proposal_term() -> None:
    texts = [Texts(caption, f"easy {i}", f"hard {i}") for i, caption in enumerate(CAPTIONS)]
    spec = ProposerRewardSpec()
    before = dict(zip(CAPTIONS, diversity_terms(texts, spec), strict=True))
    shuffled = random.Random(1).sample(texts, len(texts))
    after = dict(zip((t.caption for t in shuffled), diversity_terms(shuffled, spec), strict=True))
    assert after == before
