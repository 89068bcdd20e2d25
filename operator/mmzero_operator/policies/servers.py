"""How long frozen-role servers live: exactly while a stage that asks them runs.

Created with the stage's Job (with a queue: once the queue admits the Job), deleted once the
stage is done, failed or suspended, so their GPUs go back at once. They are created after the
Job: the trainer's scheduling, image pull and model load overlap the servers' start (its pod
retries their Services until they answer, `pipeline.SERVER_WAIT_SECONDS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mmzero_operator.manifests import servers
from mmzero_operator.observe import JobState
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import Stage


def changes(
    body: Mapping[str, Any],
    spec: RunSpec,
    running: Iterable[Stage],
    latest: Mapping[str, JobState],
    existing: Iterable[str],
) -> tuple[list[Stage], list[str]]:
    """The stages whose servers to start (each once: one call makes all of a stage's servers)
    and the servers to delete, given the stages that run and the servers that exist."""
    wanted: dict[str, Stage] = {}
    for stage in running:
        job = latest.get(stage.name)
        if job.suspended if job is not None else bool(spec.cluster.queue):  # not admitted yet
            continue
        for name, _, _ in servers(body["metadata"]["name"], stage):
            wanted[name] = stage
    have = set(existing)
    start: dict[str, Stage] = {}
    for name, stage in wanted.items():
        if name not in have:
            start.setdefault(stage.name, stage)
    return list(start.values()), sorted(have - set(wanted))
