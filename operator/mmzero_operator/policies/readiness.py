"""Whether the services stages wait for are ready: the run's frozen-role servers and the
chart's shared render service. A pod of theirs that cannot start, crashed or was restarted
makes a condition False; the stages keep waiting (its Deployment replaces the pod)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mmzero_operator import conditions as reasons
from mmzero_operator.conditions import Condition
from mmzero_operator.observe import PodFact

SERVER_HINT = (
    "; the Deployment replaces a failed pod and the stage waits for it (up to 30 min). If "
    "it keeps failing (OOMKilled), raise the memory of the stage's server pod group in "
    "spec.resources"
)
RENDER_HINT = (
    "; its Deployment replaces a failed pod and the stages' renders wait and retry. If it "
    "keeps failing (OOMKilled), raise render.resources.limits.memory in the chart's values "
    "above spec.render.memory_bytes per worker times render.workers"
)


def _troubled(facts: Iterable[tuple[str, PodFact]]) -> list[tuple[PodFact, str]]:
    """Pods that cannot start, crashed or were restarted, each with `<what>: <detail>`."""
    return [(fact, f"{what}: {fact.detail}") for what, fact in facts
            if fact.blocked or fact.failed or fact.restarted]  # fmt: skip


def _not_ready(
    problems: list[tuple[PodFact, str]], blocked: str, failed: str, hint: str
) -> Condition:
    reason = blocked if problems[0][0].blocked else failed
    return Condition(False, reason, "; ".join(text for _, text in problems) + hint)


def servers_ready(pods: Mapping[str, Iterable[PodFact]], servers: set[str]) -> Condition:
    """False while a frozen-role server pod cannot start, has crashed or was restarted."""
    problems = _troubled((f"server {name}", fact) for name, facts in sorted(pods.items())
                         if name in servers for fact in facts)  # fmt: skip
    if not problems:
        return Condition(True, reasons.READY if servers else reasons.NO_SERVERS)
    return _not_ready(problems, reasons.SERVER_POD_BLOCKED, reasons.SERVER_POD_FAILED, SERVER_HINT)


def render_ready(pods: Iterable[PodFact] | None) -> Condition:
    """False while a pod of the shared render service cannot start, crashed or was restarted
    (an SVG that exhausts its memory limit gets the pod OOM-killed); None: not watched."""
    if pods is None:
        return Condition(True, reasons.NOT_WATCHED)
    problems = _troubled(("render service", fact) for fact in pods)
    if not problems:
        return Condition(True, reasons.READY)
    return _not_ready(problems, reasons.RENDER_POD_BLOCKED, reasons.RENDER_POD_FAILED, RENDER_HINT)
