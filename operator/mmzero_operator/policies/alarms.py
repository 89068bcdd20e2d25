"""Health alarms on a run: which fire, and what the status says of them.

With `health.on_alarm: stop` a firing alarm starts nothing new (phase Stopped) until the spec
or the figures clear it; what already runs finishes (`reconcile`).
"""

from __future__ import annotations

from collections.abc import Mapping

from mmzero_operator import conditions as reasons
from mmzero_operator.conditions import Condition
from mmzero_runtime.alarms import Alarm, evaluate
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import Stage


def firing(
    spec: RunSpec,
    stages: list[Stage],
    finished: set[str],
    health: Mapping[str, Mapping[str, float]],
) -> list[Alarm]:
    """The alarms the finished stages' health figures fire, in run order."""
    figures = {s.name: health[s.name] for s in stages if s.name in finished and s.name in health}
    return evaluate(spec.health, figures)


def condition(alarms: list[Alarm]) -> Condition:
    """True while an alarm fires; the reason names the alarms, the message says what to do."""
    if not alarms:
        return Condition(False, reasons.HEALTHY)
    names = sorted({a.name for a in alarms})
    reason = "".join(part.title() for name in names for part in name.split("_"))
    return Condition(True, reason, messages(alarms))


def messages(alarms: list[Alarm], shown: int = 3) -> str:
    """The first alarms' messages (status.alarms has them all)."""
    more = f"; and {len(alarms) - shown} more in status.alarms" if len(alarms) > shown else ""
    return "; ".join(a.message for a in alarms[:shown]) + more
