"""Data filters between stages (reference §6): keep what is neither too easy nor too hard.

Coder data keeps proposals the current Coder renders sometimes but not always; Solver data keeps
items whose easy question is answered reliably and whose hard question splits the Solver. Every
filter reports what it kept, what it dropped and why, per item and in counts. Filters only apply
thresholds: the votes behind the Solver-data numbers come from `rewards.labels.label_items`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from mmzero_runtime.spec import FiltersSpec

DropReason = Literal[
    "wrong_sample_count",
    "renders_too_rarely",
    "renders_too_often",
    "no_label",
    "easy_grading_failed",
    "easy_too_low",
    "hard_too_consistent",
    "hard_too_inconsistent",
]


@dataclass(frozen=True)
class FilterReport:
    """What a filter kept and dropped; `counts` is dropped items per reason."""

    kept: list[str]
    dropped: dict[str, DropReason]
    counts: dict[DropReason, int] = field(default_factory=dict)

    @classmethod
    def build(cls, kept: list[str], dropped: dict[str, DropReason]) -> FilterReport:
        """A report with its counts filled in."""
        return cls(kept=kept, dropped=dropped, counts=dict(Counter(dropped.values())))


def _in_band(value: float, low: float, high: float) -> int:
    """-1 below, 0 inside (edges included), 1 above.

    Plain float comparison is exact at the edges here: a share k/K is one correctly rounded
    division, so when it equals a written threshold (3/4 and 0.75) both are the same double.
    """
    if value < low:
        return -1
    return 1 if value > high else 0


def coder_data_filter(renders: Mapping[str, Sequence[bool]], *, spec: FiltersSpec) -> FilterReport:
    """Keep proposals whose render rate over `coder_render_samples` draws is inside the band.

    With the defaults, 1 to 3 renders out of 4 (rates 0.25 to 0.75, edges kept, §6).

    >>> report = coder_data_filter({"a": [True, False, False, False], "b": [True] * 4,
    ...                             "c": [False] * 4, "d": [True]}, spec=FiltersSpec())
    >>> report.kept, report.dropped
    (['a'], {'b': 'renders_too_often', 'c': 'renders_too_rarely', 'd': 'wrong_sample_count'})
    """
    kept: list[str] = []
    dropped: dict[str, DropReason] = {}
    for item_id, outcomes in renders.items():
        if len(outcomes) != spec.coder_render_samples:
            dropped[item_id] = "wrong_sample_count"
            continue
        rate = sum(outcomes) / len(outcomes)
        match _in_band(rate, spec.coder_min_render_rate, spec.coder_max_render_rate):
            case -1:
                dropped[item_id] = "renders_too_rarely"
            case 1:
                dropped[item_id] = "renders_too_often"
            case _:
                kept.append(item_id)
    return FilterReport.build(kept, dropped)


class SolverItemStats(Protocol):
    """What the Solver-data filter needs of an item (`rewards.labels.ItemLabel` provides it)."""

    @property
    def label(self) -> str | None:
        """The majority label of the hard answers; None when nothing was a vote."""

    @property
    def easy_score(self) -> float | None:
        """Easy self-consistency or accuracy; None when every easy grading failed."""

    @property
    def hard_consistency(self) -> float:
        """The label's share of the hard votes."""


def _verdict(stats: SolverItemStats, spec: FiltersSpec) -> DropReason | None:
    """The first rule an item breaks, or None to keep it."""
    if stats.label is None:
        return "no_label"
    if stats.easy_score is None:
        return "easy_grading_failed"
    if stats.easy_score < spec.min_easy_score:
        return "easy_too_low"
    match _in_band(stats.hard_consistency, spec.min_hard_consistency, spec.max_hard_consistency):
        case -1:
            return "hard_too_inconsistent"
        case 1:
            return "hard_too_consistent"
    return None


def solver_data_filter(items: Mapping[str, SolverItemStats], *, spec: FiltersSpec) -> FilterReport:
    """Keep items with a label, easy score >= min_easy_score (equal is kept, as the reference
    code does) and hard consistency inside the band, edges kept (§6). With K = 10 the default
    band [0.25, 0.75] keeps 3/10 to 7/10.

    >>> from types import SimpleNamespace as Item
    >>> report = solver_data_filter({
    ...     "s1": Item(label="a", easy_score=0.5, hard_consistency=0.3),
    ...     "s2": Item(label="a", easy_score=1.0, hard_consistency=0.8),
    ...     "s3": Item(label=None, easy_score=1.0, hard_consistency=0.0)}, spec=FiltersSpec())
    >>> report.kept, report.dropped
    (['s1'], {'s2': 'hard_too_consistent', 's3': 'no_label'})
    """
    kept: list[str] = []
    dropped: dict[str, DropReason] = {}
    for item_id, stats in items.items():
        reason = _verdict(stats, spec)
        if reason is None:
            kept.append(item_id)
        else:
            dropped[item_id] = reason
    return FilterReport.build(kept, dropped)
