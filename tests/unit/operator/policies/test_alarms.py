"""Health alarms on a run: which fire, and the HealthAlarm condition they make."""

from __future__ import annotations

from mmzero_operator import conditions as reasons
from mmzero_operator.policies.alarms import condition, firing, messages
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import all_stages

SPEC = RunSpec(iterations=1)
STAGES = all_stages(SPEC)
COLLAPSED = {"groups/zero_variance_share": 1.0}


def test_only_finished_stages_figures_fire_alarms() -> None:
    first = STAGES[0].name
    assert firing(SPEC, STAGES, set(), {first: COLLAPSED}) == []
    assert [a.name for a in firing(SPEC, STAGES, {first}, {first: COLLAPSED})] != []


def test_the_condition_names_the_alarms_in_camel_case_and_caps_its_messages() -> None:
    assert condition([]).reason == reasons.HEALTHY and not condition([]).true
    fired = firing(SPEC, STAGES, {s.name for s in STAGES}, {s.name: COLLAPSED for s in STAGES})
    made = condition(fired)
    assert made.true and made.reason.isalpha() and made.reason[0].isupper()
    if len(fired) > 3:
        assert messages(fired).endswith(f"and {len(fired) - 3} more in status.alarms")
