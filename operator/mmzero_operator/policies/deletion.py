"""Deleting a run with `cluster.delete_artifacts`: its pods stop first (no pod may outlive
the artifacts it writes), then its store prefix goes, and only then the run (its finalizer
holds it meanwhile)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mmzero_operator.observe import job_state


def deletes_artifacts(spec: Mapping[str, Any]) -> bool:
    """Whether deleting the run deletes its artifacts (so it needs the finalizer)."""
    return bool((spec.get("cluster") or {}).get("delete_artifacts"))


def to_suspend(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The run's unfinished Jobs: suspended, the Job controller stops their pods."""
    return [state.name for job in jobs if (state := job_state(job)) is not None and state.active]


def live(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """The run's pods that still run or may start, by name."""
    return sorted(
        pod["metadata"]["name"]
        for pod in pods
        if (pod.get("status") or {}).get("phase") in ("Pending", "Running")
    )


def waiting_message(pods: list[str]) -> str:
    return f"waiting for pods {', '.join(pods)} to stop before deleting the run's artifacts"


def failed_message(run: str, error: Exception) -> str:
    return (
        f"cannot delete the artifacts of run {run}: {error}. The run stays until they are "
        "deleted; to keep them instead, set spec.cluster.delete_artifacts to false"
    )
