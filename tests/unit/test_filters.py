"""Data filters between stages (reference §6)."""

from __future__ import annotations

import pytest

from mmzero_runtime.filters import coder_data_filter, solver_data_filter
from mmzero_runtime.rewards.labels import ItemLabel
from mmzero_runtime.spec import FiltersSpec

SPEC = FiltersSpec()


@pytest.mark.parametrize(
    ("renders", "kept"),
    [
        (0, False),  # 0/4 never renders: too hard to draw
        (1, True),  # 1/4 = 0.25: lower edge kept
        (2, True),  # 2/4 inside
        (3, True),  # 3/4 = 0.75: upper edge kept
        (4, False),  # 4/4 always renders: teaches nothing
    ],
    ids=["0of4", "1of4", "2of4", "3of4", "4of4"],
)
def test_coder_data_filter_render_rate_keeps_band(renders: int, kept: bool) -> None:
    report = coder_data_filter({"p": [True] * renders + [False] * (4 - renders)}, spec=SPEC)
    assert (report.kept == ["p"]) is kept


def test_coder_data_filter_reports_reasons_and_counts() -> None:
    renders = {
        "a": [True] * 4,
        "b": [False] * 4,
        "c": [False] * 4,
        "d": [True, False],  # 2 results where 4 were drawn
        "e": [True, False] * 2,
    }
    report = coder_data_filter(renders, spec=SPEC)
    assert report.kept == ["e"]
    assert report.dropped == {
        "a": "renders_too_often",
        "b": "renders_too_rarely",
        "c": "renders_too_rarely",
        "d": "wrong_sample_count",
    }
    assert report.counts == {
        "renders_too_often": 1,
        "renders_too_rarely": 2,
        "wrong_sample_count": 1,
    }


def stats(label: str | None = "a", easy: float | None = 1.0, hard: float = 0.5) -> ItemLabel:
    """An item's measurements; the defaults pass every rule."""
    return ItemLabel(label=label, easy_score=easy, hard_consistency=hard)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (stats(), None),  # easy 1.0, hard 0.5: kept
        (stats(hard=3 / 10), None),  # 0.3 >= 0.25: the lowest share kept with K = 10
        (stats(hard=7 / 10), None),  # 0.7 <= 0.75: the highest share kept with K = 10
        (stats(hard=1 / 4), None),  # exactly the lower edge (K = 4): kept
        (stats(hard=3 / 4), None),  # exactly the upper edge (K = 4): kept
        (stats(hard=2 / 10), "hard_too_inconsistent"),  # 0.2 < 0.25
        (stats(hard=8 / 10), "hard_too_consistent"),  # 0.8 > 0.75
        (stats(label=None, hard=0.0), "no_label"),  # no vote at all: no majority label
        (stats(easy=5 / 10), None),  # easy 0.5: equal to the minimum is kept (code, not ">")
        (stats(easy=4 / 10), "easy_too_low"),  # 0.4 < 0.5
        (stats(easy=None), "easy_grading_failed"),  # every easy grading failed
        (stats(label=None, easy=0.0, hard=0.0), "no_label"),  # the first rule broken is named
    ],
    ids=[
        "pass",
        "hard-3of10",
        "hard-7of10",
        "hard-low-edge",
        "hard-high-edge",
        "hard-2of10",
        "hard-8of10",
        "no-label",
        "easy-at-min",
        "easy-low",
        "easy-unknown",
        "first-reason",
    ],
)
def test_solver_data_filter_table_keeps_or_names_reason(
    item: ItemLabel, reason: str | None
) -> None:
    report = solver_data_filter({"s": item}, spec=SPEC)
    assert report.dropped.get("s") == reason and (report.kept == ["s"]) is (reason is None)


def test_solver_data_filter_paper_band_drops_quarter() -> None:
    # The paper's band starts at 0.27: a 1/4 share, kept by the code's 0.25, is dropped.
    spec = FiltersSpec(min_hard_consistency=0.27)
    assert solver_data_filter({"s": stats(hard=0.25)}, spec=spec).dropped == {
        "s": "hard_too_inconsistent"
    }


def test_solver_data_filter_drops_counted_per_reason() -> None:
    items = {"a": stats(), "b": stats(hard=0.9), "c": stats(hard=1.0), "d": stats(label=None)}
    report = solver_data_filter(items, spec=SPEC)
    assert (report.kept, report.counts) == (["a"], {"hard_too_consistent": 2, "no_label": 1})
