"""Health figures computed from a stage's saved tables (issue 7 §2), and the alarms they fire."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.alarms import evaluate
from mmzero_runtime.models.procedural import generate_items
from mmzero_runtime.spec import HealthSpec, RunSpec
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.plan import Stage, all_stages
from mmzero_runtime.stages.health.health import histogram, stage_health
from mmzero_runtime.storage.records import dumps_jsonl

SPEC = RunSpec(iterations=1)


def _stage(kind: str) -> Stage:
    return next(s for s in all_stages(SPEC) if s.kind == kind)


def _reader(files: dict[str, list[dict[str, Any]]]) -> Any:
    tables = {name: dumps_jsonl(rows) for name, rows in files.items()}
    return tables.__getitem__


@pytest.fixture
def proposals(table_row: Any) -> Any:
    """A reader of proposal tables holding `proposals` (None: one that did not parse)."""

    def read(proposals: list[dict[str, Any] | None]) -> Any:
        name = keys.PROPOSALS_FOR_CODER
        rows = [table_row(name, id=f"p{i}", proposal=p) for i, p in enumerate(proposals)]
        half = len(rows) // 2
        return _reader({name: rows[:half], keys.PROPOSALS_FOR_SOLVER: rows[half:]})

    return read


def test_varied_proposals_are_diverse_and_a_repeating_proposer_trips_the_collapse_alarm(
    proposals: Any,
) -> None:
    varied = [asdict(item.proposal) for item in generate_items(24, seed=3)]
    health = stage_health(SPEC, _stage("propose"), proposals([*varied, None, None]))
    figures = health["figures"]
    assert figures["proposals/parse_share"] == 24 / 26
    assert figures["diversity/caption_distinct_share"] > 0.5
    assert evaluate(SPEC.health, {"i1-propose": figures}) == []

    # a Proposer that repeats itself: one proposal, its numbers changed at most
    repeated = [{**varied[0], "easy_answer": str(i)} for i in range(24)]
    figures = stage_health(SPEC, _stage("propose"), proposals(repeated))["figures"]
    assert figures["diversity/caption_distinct_share"] == 1 / 24
    assert figures["diversity/hard_question_near_duplicate_share"] == 1.0
    assert figures["proposals/content_type_top_share"] == 1.0
    alarms = evaluate(SPEC.health, {"i1-propose": figures})
    assert [a.name for a in alarms] == ["collapse"]


def test_diversity_is_measured_on_the_first_diversity_sample_proposals(proposals: Any) -> None:
    spec = SPEC.model_copy(update={"health": HealthSpec(diversity_sample=4)})
    varied = [asdict(item.proposal) for item in generate_items(4, seed=3)]
    repeats = varied + [varied[0]] * 20  # the repeats come after the sample
    figures = stage_health(spec, _stage("propose"), proposals(repeats))["figures"]
    assert figures["diversity/caption_distinct_share"] == 1.0


def test_coder_data_render_and_filter_shares() -> None:
    rows = [
        {"id": "a", "reasons": ["ok", "ok", "parse_error", "no_svg"], "dropped": None},
        {"id": "b", "reasons": ["ok"] * 4, "dropped": "renders_too_often"},
    ]
    figures = stage_health(SPEC, _stage("coder-data"), _reader({keys.RENDERS: rows}))["figures"]
    assert figures == {
        "renders/ok_share": 6 / 8,
        "renders/failure_share": 2 / 8,
        "renders/reason/no_svg": 1 / 8,
        "renders/reason/ok": 6 / 8,
        "renders/reason/parse_error": 1 / 8,
        "filter/kept_share": 0.5,
        "filter/dropped/renders_too_often": 0.5,
    }


def test_solver_data_figures_from_candidates_draws_and_probes(table_row: Any) -> None:
    def candidate(consistency: float, margin: float, dropped: str | None) -> dict[str, Any]:
        return table_row(keys.CANDIDATES, hard_consistency=consistency, vote_margin=margin,
                         dropped=dropped)  # fmt: skip

    def probe(chart: str, correct: bool, dropped: str | None = None) -> dict[str, Any]:
        return table_row(keys.PROBES, chart=chart, label_correct=correct, vote_margin=0.5,
                         dropped=dropped)  # fmt: skip

    read = _reader({
        keys.DRAWS: [{"id": "a", "render": "ok"}, {"id": "b", "render": "ok"},
                     {"id": "c", "render": "timeout"}],
        keys.CANDIDATES: [candidate(0.5, 0.2, None), candidate(1.0, 1.0, "hard_too_consistent")],
        keys.PROBES: [probe("bar", True), probe("bar", False, "easy_too_low"),
                      probe("pie", False), probe("pie", False)],
    })  # fmt: skip
    health = stage_health(SPEC, _stage("solver-data"), read)
    figures = health["figures"]
    assert figures["renders/failure_share"] == 1 / 3
    assert figures["filter/dropped/hard_too_consistent"] == 0.5
    assert figures["votes/margin_mean"] == 0.6
    assert figures["difficulty/goldilocks_share"] == 0.5  # 0.5 in [0.25, 0.75], 1.0 not
    assert figures["probes/label_accuracy"] == 0.25
    assert figures["probes/label_accuracy/bar"] == 0.5 and figures["probes/label_accuracy/pie"] == 0
    assert figures["probes/kept_label_accuracy"] == 1 / 3 and figures["probes/kept_share"] == 0.75
    assert health["histograms"]["difficulty/hard_consistency"] == [0] * 5 + [1] + [0] * 3 + [1]
    alarms = evaluate(SPEC.health, {"i1-solver-data": figures})
    assert [a.name for a in alarms] == ["label_accuracy"]


def test_grpo_figures_sum_zero_variance_groups_over_steps() -> None:
    steps = [
        {"kind": "step", "step": 1, "groups/total": 4, "groups/zero_variance": 4,
         "reward/mean": 0.1, "logprob/rollout_abs_diff_mean": 0.01},
        {"kind": "step", "step": 2, "groups/total": 4, "groups/zero_variance": 2,
         "reward/mean": 0.3, "logprob/rollout_abs_diff_mean": 0.03},
    ]  # fmt: skip
    figures = stage_health(SPEC, _stage("coder-grpo"), _reader({keys.STEPS: steps}))["figures"]
    assert figures == {
        "groups/zero_variance_share": 0.75,
        "reward/first_step_mean": 0.1,
        "reward/last_step_mean": 0.3,
        "logprob/rollout_gap_mean": pytest.approx(0.02),
    }
    skipped = _reader({keys.STEPS: [{"kind": "step", "step": 0, "skipped": "no data"}]})
    assert stage_health(SPEC, _stage("coder-grpo"), skipped)["figures"] == {}


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=50))
def test_histogram_counts_every_value_once(values: list[float]) -> None:
    counts = histogram(values)
    assert sum(counts) == len(values) and len(counts) == 10
