"""The BLEU-cluster diversity term of the Proposer reward (reference §5.3 step 6, §11).

Each field (caption, easy question, hard question) of the M valid proposals of a step batch is
clustered separately: distance = 1 - sentence-BLEU on whitespace tokens (NLTK smoothing
method1), average-linkage agglomerative clustering cut at the distance threshold. A proposal in a
large cluster is penalised; in `penalty_and_bonus` mode one in a small cluster earns a bonus.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mmzero_runtime.rewards.judgement import exact
from mmzero_runtime.spec import ProposerRewardSpec


@dataclass(frozen=True)
class Texts:
    """The three clustered fields of one valid proposal."""

    caption: str
    easy_question: str
    hard_question: str


def bleu(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """Sentence-BLEU of token lists; identical lists score 1.

    NLTK gives identical texts of fewer than 4 tokens less than 1 (no 4-grams to match), which
    would keep short duplicate questions apart; equal texts are the clearest duplicates.
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # seconds to import

    if list(hypothesis) == list(reference):
        return 1.0
    smoothing = SmoothingFunction().method1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns on zero n-gram overlaps of short texts
        return float(
            sentence_bleu([list(reference)], list(hypothesis), smoothing_function=smoothing)
        )


def distance_matrix(texts: Sequence[str]) -> np.ndarray:
    """d_ij = 1 - (BLEU(i, j) + BLEU(j, i)) / 2.

    The reference fills the matrix from BLEU(hyp = i, ref = j) for i <= j, which makes clusters
    depend on batch order; averaging both directions makes the distance symmetric by
    construction and the result independent of order.
    """
    tokens = [text.split() for text in texts]
    size = len(tokens)
    distances = np.zeros((size, size))
    for i in range(size):
        for j in range(i + 1, size):
            similarity = (bleu(tokens[i], tokens[j]) + bleu(tokens[j], tokens[i])) / 2
            distances[i, j] = distances[j, i] = 1.0 - similarity
    return distances


def cluster_sizes(texts: Sequence[str], threshold: float) -> list[int]:
    """k_f: the size of each text's cluster.

    >>> cluster_sizes(["a red bar chart of sales", "a red bar chart of sales", "a map"], 0.25)
    [2, 2, 1]
    """
    if len(texts) < 2:  # sklearn needs two samples; one text is its own cluster
        return [1] * len(texts)
    from sklearn.cluster import AgglomerativeClustering  # seconds to import

    model = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=threshold
    )
    labels = [int(label) for label in model.fit_predict(distance_matrix(texts))]
    sizes = Counter(labels)
    return [sizes[label] for label in labels]


def _field_excess(sizes: list[int], mode: str) -> list[Fraction]:
    """Per text, M·(s_f - u): k - 1 in penalty mode, k - M/C in penalty_and_bonus mode."""
    match mode:
        case "penalty":
            return [Fraction(k - 1) for k in sizes]
        case "penalty_and_bonus":
            clusters = sum(Fraction(1, k) for k in sizes)  # each cluster of k adds k · 1/k
            average = Fraction(len(sizes)) / clusters
            return [k - average for k in sizes]
    raise ValueError(f"unknown diversity_mode {mode!r}")


def diversity_terms(proposals: Sequence[Texts], spec: ProposerRewardSpec) -> list[float]:
    """r_div per valid proposal of the whole step batch (§5.3 step 6).

    r_div = -clip(lambda · M · sum_f w_f (s_f - u_f), -lambda, lambda), s_f = k_f / M.
    `penalty` (the reference code): u_f = 1/M, so the term is -min(lambda, lambda · sum_f
    w_f (k_f - 1)), in [-lambda, 0]. `penalty_and_bonus` (the paper): u_f = 1/C_f, the share of
    an average cluster among the C_f clusters, so a proposal in a smaller-than-average cluster
    earns up to +lambda (with u = 1/M, as the paper prints it, no bonus could ever occur).

    >>> spec = ProposerRewardSpec()
    >>> texts = [Texts("a red bar chart of sales", "what is the top bar?", "q one"),
    ...          Texts("a red bar chart of sales", "how many bars?", "q two"),
    ...          Texts("a map of rivers in france", "which river is longest?", "q three")]
    >>> [round(value, 3) for value in diversity_terms(texts, spec)]
    [-0.225, -0.225, 0.0]
    """
    weights = (
        spec.diversity_caption_weight,
        spec.diversity_easy_question_weight,
        spec.diversity_hard_question_weight,
    )
    fields = (
        [p.caption for p in proposals],
        [p.easy_question for p in proposals],
        [p.hard_question for p in proposals],
    )
    excess = [Fraction(0)] * len(proposals)
    for weight, texts in zip(weights, fields, strict=True):
        sizes = cluster_sizes(texts, spec.diversity_distance_threshold)
        excess = [
            total + exact(weight) * extra
            for total, extra in zip(excess, _field_excess(sizes, spec.diversity_mode), strict=True)
        ]
    bound = exact(spec.diversity_weight)
    return [float(-max(-bound, min(bound, bound * value))) for value in excess]
