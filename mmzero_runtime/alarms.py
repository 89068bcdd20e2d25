"""Health alarms: the thresholds of `spec.health` applied to the health figures of finished stages.

Pure, and evaluated afresh by each executor (the local loop before every stage, the operator on
every reconcile) from the figures the stages stored in their `health.json`, so a threshold
raised in the spec, or `on_alarm` switched to `warn`, clears an alarm without rerunning a stage.
A self-evolving run fails quietly (user-asks §3): these name the failure while it happens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mmzero_runtime.spec import HealthSpec

log = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
"""A stage's health figures, under its prefix and in its manifest."""

AlarmName = Literal["collapse", "all_same_groups", "label_accuracy", "render_failures"]


@dataclass(frozen=True)
class _Rule:
    name: AlarmName
    figures: tuple[str, ...]
    """Figures the rule reads (any one of them crossing the threshold fires it)."""
    threshold: str
    """The `HealthSpec` field."""
    below: bool
    """True: fires below the threshold; False: above it."""
    advice: str


RULES: tuple[_Rule, ...] = (
    _Rule(
        "collapse",
        (
            "diversity/caption_distinct_share",
            "diversity/easy_question_distinct_share",
            "diversity/hard_question_distinct_share",
        ),
        "min_distinct_share",
        True,
        "the Proposer repeats itself; raise data.propose_sampling.temperature or "
        "rewards.proposer.diversity_weight, or select diversity_mode: penalty_and_bonus",
    ),
    _Rule(
        "all_same_groups",
        ("groups/zero_variance_share",),
        "max_zero_variance_share",
        False,
        "most GRPO groups got identical rewards and teach nothing; check that the stage's "
        "rewards can differ (its data filter, the judge's samples) or raise the role's group_size",
    ),
    _Rule(
        "label_accuracy",
        ("probes/label_accuracy",),
        "min_probe_label_accuracy",
        True,
        "the Solver's majority labels are wrong on known-answer probes, so it trains on wrong "
        "labels; raise rewards.solver.label_samples, lower data.solver_service_sampling."
        "temperature, or start from a stronger base model",
    ),
    _Rule(
        "render_failures",
        ("renders/failure_share",),
        "max_render_failure_share",
        False,
        "most drawings do not render; the report lists renders by reason (a truncated SVG: "
        "raise data.code_sampling.max_tokens)",
    ),
)


@dataclass(frozen=True)
class Alarm:
    """One fired alarm: which stage's figure crossed which threshold, and what to do."""

    name: AlarmName
    stage: str
    figure: str
    value: float
    threshold: float
    setting: str
    """The `spec.health` field holding the threshold."""
    below: bool
    advice: str

    @property
    def message(self) -> str:
        """E.g. `alarm collapse at i1-propose: diversity/... 0.062 < health.min_distinct_share
        0.2: <what to do>`."""
        sign = "<" if self.below else ">"
        return (
            f"alarm {self.name} at {self.stage}: {self.figure} {self.value:.3g} {sign} "
            f"health.{self.setting} {self.threshold:g}: {self.advice}"
        )

    def as_record(self) -> dict[str, Any]:
        """JSON-ready, for run status and the report."""
        return {
            "name": self.name,
            "stage": self.stage,
            "figure": self.figure,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


def parse_health(data: bytes, source: str) -> dict[str, float]:
    """The scalar figures of a stored `health.json` (an unreadable one names its file)."""
    try:
        figures = json.loads(data)["figures"]
        return {str(name): float(value) for name, value in figures.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{source}: unreadable health figures ({error})") from None
    except RecursionError:
        raise ValueError(f"{source}: unreadable health figures (nested too deeply)") from None


def collect(
    stages: Iterable[tuple[str, str]], read: Callable[[str], bytes | None]
) -> dict[str, dict[str, float]]:
    """The figures of each finished stage given as (name, output prefix), in the order given;
    `read(key)` returns a stored file's bytes or None. A stage without a `health.json` (made
    before health figures existed) has none; one whose file cannot be read is skipped with a
    warning (its alarms cannot fire, the run goes on)."""
    found: dict[str, dict[str, float]] = {}
    for name, prefix in stages:
        key = f"{prefix}/{HEALTH_FILE}"
        data = read(key)
        if data is None:
            continue
        try:
            found[name] = parse_health(data, key)
        except ValueError as error:
            log.warning("%s; its alarms are not evaluated (rerun the stage to rewrite it)", error)
    return found


def evaluate(spec: HealthSpec, health: Mapping[str, Mapping[str, float]]) -> list[Alarm]:
    """The alarms that fire, in stage order then rule order; `health` maps each finished
    stage's name to its figures (in run order).

    >>> [a.name for a in evaluate(HealthSpec(), {"i1-propose":
    ...     {"diversity/caption_distinct_share": 0.1}})]
    ['collapse']
    """
    fired: list[Alarm] = []
    for stage, figures in health.items():
        for rule in RULES:
            threshold = float(getattr(spec, rule.threshold))
            for figure in rule.figures:
                value = figures.get(figure)
                if value is None or not (value < threshold if rule.below else value > threshold):
                    continue
                fired.append(Alarm(rule.name, stage, figure, value, threshold, rule.threshold,
                                   rule.below, rule.advice))  # fmt: skip
                break  # one alarm per rule and stage: the first figure that crossed
    return fired


def stops(spec: HealthSpec, alarms: list[Alarm]) -> bool:
    """True when the spec says a firing alarm stops the run."""
    return spec.on_alarm == "stop" and bool(alarms)
