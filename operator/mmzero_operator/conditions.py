"""The run's status conditions: a bounded set of types, the reasons of each as constants, and
the merge that keeps a condition's `lastTransitionTime` while its status holds.

Types are states; a reason is CamelCase data chosen where the state is decided, never parsed
back out of a message. The phase conditions (`Progressing`, `Suspended`, `Succeeded`,
`Failed`) take the phase itself (`crd.PHASES`) as their reason unless a constant says more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

MESSAGE_LIMIT = 4096
"""metav1.Condition's limit on a message."""


class ConditionType(StrEnum):
    """Every condition a run's status carries, in the order it carries them."""

    PROGRESSING = "Progressing"
    PODS_BLOCKED = "PodsBlocked"
    STORE_REACHABLE = "StoreReachable"
    SERVERS_READY = "ServersReady"
    RENDER_READY = "RenderReady"
    HEALTH_ALARM = "HealthAlarm"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# PodsBlocked: why a stage pod cannot start by itself (the class of its waiting reason).
IMAGE_PULL: Final = "ImagePull"
INVALID_IMAGE: Final = "InvalidImage"
CONTAINER_CONFIG: Final = "ContainerConfig"
UNSCHEDULABLE: Final = "Unschedulable"
NOT_BLOCKED: Final = "None"

# StoreReachable
MANIFESTS_READ: Final = "ManifestsRead"
STORE_UNAVAILABLE: Final = "StoreUnavailable"

# ServersReady and RenderReady
READY: Final = "Ready"
NO_SERVERS: Final = "NoServers"
SERVER_POD_BLOCKED: Final = "ServerPodBlocked"
SERVER_POD_FAILED: Final = "ServerPodFailed"
NOT_WATCHED: Final = "NotWatched"
RENDER_POD_BLOCKED: Final = "RenderPodBlocked"
RENDER_POD_FAILED: Final = "RenderPodFailed"

# HealthAlarm: `Healthy`, else the firing alarms' names in CamelCase (`policies.alarms`).
HEALTHY: Final = "Healthy"

# Suspended and Failed
SPEC_SUSPEND: Final = "SpecSuspend"
STAGE_FAILED: Final = "StageFailed"


@dataclass(frozen=True)
class Condition:
    """A condition as the reconcile wants it; `conditions` adds the times."""

    true: bool
    reason: str
    message: str = ""


def iso(moment: float) -> str:
    """A Unix time as metav1.Time (whole seconds, UTC)."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    previous: list[dict[str, Any]],
    wanted: Mapping[ConditionType, Condition],
    now: float,
    generation: int,
) -> list[dict[str, Any]]:
    """metav1.Conditions in `ConditionType` order; a condition keeps its lastTransitionTime
    while its status holds."""
    old = {c["type"]: c for c in previous}
    out = []
    for kind in ConditionType:
        if kind not in wanted:
            continue
        condition = wanted[kind]
        status = "True" if condition.true else "False"
        before = old.get(kind)
        since = before["lastTransitionTime"] if before and before["status"] == status else iso(now)
        out.append({"type": str(kind), "status": status, "reason": condition.reason,
                    "message": condition.message[:MESSAGE_LIMIT], "lastTransitionTime": since,
                    "observedGeneration": generation})  # fmt: skip
    return out
