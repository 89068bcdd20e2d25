"""Deleting a run's artifacts waits for its pods: which Jobs to stop, which pods still run."""

from __future__ import annotations

from typing import Any

from mmzero_operator.policies.deletion import deletes_artifacts, live, to_suspend


def _job(name: str, *conditions: str) -> dict[str, Any]:
    labels = {"mmzero.dev/iteration": "1", "mmzero.dev/stage": "propose", "mmzero.dev/attempt": "1"}
    found = [{"type": c, "status": "True"} for c in conditions]
    return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": found}}


def test_only_unfinished_jobs_of_ours_are_suspended() -> None:
    foreign = {"metadata": {"name": "x", "labels": {}}}
    jobs = [_job("a"), _job("b", "Complete"), _job("c", "Failed"), foreign]
    assert to_suspend(jobs) == ["a"]


def test_pending_and_running_pods_hold_the_deletion() -> None:
    pods = [
        {"metadata": {"name": n}, "status": {"phase": p}}
        for n, p in (("b", "Running"), ("a", "Pending"), ("c", "Succeeded"))
    ]
    assert live(pods) == ["a", "b"]


def test_only_a_run_that_asks_deletes_its_artifacts() -> None:
    assert deletes_artifacts({"cluster": {"delete_artifacts": True}})
    assert not deletes_artifacts({"cluster": {}}) and not deletes_artifacts({})
