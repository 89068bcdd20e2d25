"""The run's conditions: a bounded set of types in one order, reasons as CamelCase data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mmzero_operator import conditions as reasons
from mmzero_operator.conditions import Condition, ConditionType, conditions
from mmzero_operator.observe import JobState, PodFact
from mmzero_operator.reconcile import Decision, reconcile, store_unavailable
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import all_stages

NOW = 1_800_000_000.0
STAGES = [s.name for s in all_stages(RunSpec(iterations=1))]
CAMEL = re.compile(r"[A-Z][A-Za-z]*")


def _body(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    document = RunSpec.model_validate({"iterations": 1, **spec}).model_dump(mode="json")
    return {
        "metadata": {"name": "demo", "namespace": "ml", "uid": "u-1", "generation": 2},
        "spec": document,
        "status": status or {},
    }


def _job(outcome: str, *pods: PodFact, attempt: int = 1, reason: str = "") -> JobState:
    return JobState(
        "demo-i1-proposer-grpo",
        "i1-proposer-grpo",
        attempt,
        outcome,  # type: ignore[arg-type]
        reason,
        finished_at=NOW - 10_000,
        pods=pods,
    )


BLOCKED = PodFact("p", reasons.IMAGE_PULL, "ErrImagePull: no such image", NOW)
OOM = PodFact("s", detail="pod s exited 137 (OOMKilled)", failed=True)


@pytest.mark.parametrize(
    "decision",
    [
        # a new run: Running
        pytest.param(lambda: reconcile(_body(), [], [], NOW), id="running"),
        # a pod that cannot pull its image, before its deadline
        pytest.param(lambda: reconcile(_body(), [_job("waiting", BLOCKED)], [], NOW), id="blocked"),
        # attempts used up: Failed
        pytest.param(
            lambda: reconcile(
                _body(cluster={"stage_attempts": 1}), [_job("failed", attempt=1)], [], NOW
            ),
            id="failed",
        ),
        # every stage done: Succeeded
        pytest.param(lambda: reconcile(_body(), [], STAGES, NOW), id="succeeded"),
        # suspended, with a crashed server pod and a crashed render pod
        pytest.param(
            lambda: reconcile(
                _body(suspend=True),
                [],
                [],
                NOW,
                ["demo-i1pg-solver"],
                {"demo-i1pg-solver": [OOM]},
                render_pods=[OOM],
            ),
            id="suspended",
        ),
        # a health alarm that stops the run
        pytest.param(
            lambda: reconcile(
                _body(health={"on_alarm": "stop"}),
                [],
                STAGES[:1],
                NOW,
                health={STAGES[0]: {"groups/zero_variance_share": 1.0}},
            ),
            id="stopped",
        ),
    ],
)
def test_every_condition_has_a_type_of_the_bounded_set_in_order(decision: Any) -> None:
    made: Decision = decision()
    found = made.status["conditions"]
    assert [c["type"] for c in found] == [str(kind) for kind in ConditionType]
    for condition in found:
        assert CAMEL.fullmatch(condition["reason"]), condition
        assert condition["status"] in ("True", "False")


def test_a_blocked_pod_is_the_reason_and_the_message_names_the_pod() -> None:
    made = reconcile(_body(), [_job("waiting", BLOCKED)], [], NOW)
    blocked = next(c for c in made.status["conditions"] if c["type"] == "PodsBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", reasons.IMAGE_PULL)
    assert blocked["message"] == "ImagePull: pod p: ErrImagePull: no such image"


def test_store_unavailable_sets_only_store_reachable() -> None:
    running = reconcile(_body(), [], [], NOW)
    status = store_unavailable(_body(running.status), "no Secret", NOW + 5)
    store = [c for c in status["conditions"] if c["type"] == "StoreReachable"]
    assert [(c["status"], c["reason"]) for c in store] == [("False", reasons.STORE_UNAVAILABLE)]
    assert len(status["conditions"]) == len(ConditionType)


def test_conditions_come_in_type_order_and_keep_their_time_while_the_status_holds() -> None:
    first = conditions(
        [],
        {
            ConditionType.FAILED: Condition(False, "Running"),
            ConditionType.PROGRESSING: Condition(True, "Running"),
        },
        NOW,
        1,
    )
    assert [c["type"] for c in first] == ["Progressing", "Failed"]
    later = conditions(
        first, {ConditionType.PROGRESSING: Condition(True, "Other", "m" * 5000)}, NOW + 60, 2
    )
    assert later[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert len(later[0]["message"]) == reasons.MESSAGE_LIMIT
    flipped = conditions(
        first, {ConditionType.PROGRESSING: Condition(False, "Stopped")}, NOW + 60, 2
    )
    assert flipped[0]["lastTransitionTime"] != first[0]["lastTransitionTime"]
