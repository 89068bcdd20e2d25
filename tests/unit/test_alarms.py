"""Health alarms: thresholds of spec.health applied to stored health figures (issue 7 §3)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.alarms import HEALTH_FILE, RULES, collect, evaluate, parse_health, stops
from mmzero_runtime.spec import HealthSpec

SPEC = HealthSpec()


@pytest.mark.parametrize(
    ("figure", "value", "alarm"),
    [
        ("diversity/hard_question_distinct_share", 0.05, "collapse"),
        ("groups/zero_variance_share", 0.95, "all_same_groups"),
        ("probes/label_accuracy", 0.1, "label_accuracy"),
        ("renders/failure_share", 0.97, "render_failures"),
    ],
)
def test_each_alarm_fires_past_its_threshold_and_says_what_to_do(
    figure: str, value: float, alarm: str
) -> None:
    fired = evaluate(SPEC, {"i2-x": {figure: value}})
    assert [(a.name, a.stage, a.figure) for a in fired] == [(alarm, "i2-x", figure)]
    rule = next(r for r in RULES if r.name == alarm)
    message = fired[0].message
    assert f"health.{rule.threshold}" in message and "i2-x" in message and figure in message
    assert fired[0].as_record()["message"] == message


@given(
    st.sampled_from(RULES),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_an_alarm_fires_exactly_when_its_figure_crosses(rule, threshold, value) -> None:  # type: ignore[no-untyped-def]
    spec = HealthSpec(**{rule.threshold: threshold})
    fired = evaluate(spec, {"s": {rule.figures[0]: value}})
    crossed = value < threshold if rule.below else value > threshold
    assert [a.name for a in fired] == ([rule.name] if crossed else [])


def test_threshold_at_the_value_does_not_fire_and_one_alarm_per_rule_and_stage() -> None:
    edge = {"probes/label_accuracy": 0.3, "groups/zero_variance_share": 0.8}
    assert evaluate(SPEC, {"s": edge}) == []
    collapsed = {f: 0.0 for f in next(r for r in RULES if r.name == "collapse").figures}
    assert [a.name for a in evaluate(SPEC, {"a": collapsed, "b": collapsed})] == ["collapse"] * 2


def test_stop_only_when_the_spec_says_stop_and_an_alarm_fires() -> None:
    fired = evaluate(SPEC, {"s": {"probes/label_accuracy": 0.0}})
    assert not stops(SPEC, fired)
    assert stops(HealthSpec(on_alarm="stop"), fired)
    assert not stops(HealthSpec(on_alarm="stop"), [])


def test_collect_reads_stored_figures_skips_missing_and_unreadable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = {
        f"i1/propose/{HEALTH_FILE}": json.dumps({"figures": {"a/b": 1}}).encode(),
        f"i1/coder-data/{HEALTH_FILE}": b"{not json",
    }
    stages = [("i1-propose", "i1/propose"), ("i1-coder-data", "i1/coder-data"), ("x", "x")]
    assert collect(stages, stored.get) == {"i1-propose": {"a/b": 1.0}}
    assert "i1/coder-data/health.json: unreadable health figures" in caplog.text


def test_parse_health_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"k/health\.json: unreadable"):
        parse_health(b'{"figures": {"a": "x"}}', "k/health.json")
