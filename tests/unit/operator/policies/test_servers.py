"""Frozen-role servers live exactly while a stage that asks them runs."""

from __future__ import annotations

from mmzero_operator.observe import JobState
from mmzero_operator.policies.servers import changes
from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.graph.plan import all_stages

BODY = {"metadata": {"name": "demo"}}
SPEC = RunSpec(iterations=1)
GRPO = all_stages(SPEC)[0]  # i1-proposer-grpo: asks a Coder and a Solver


def test_a_running_stage_gets_its_servers_once_and_keeps_them() -> None:
    start, delete = changes(BODY, SPEC, [GRPO], {}, [])
    assert (start, delete) == ([GRPO], [])
    start, delete = changes(BODY, SPEC, [GRPO], {}, ["demo-i1pg-coder", "demo-i1pg-solver"])
    assert (start, delete) == ([], [])


def test_servers_go_when_their_stage_stops_running_or_waits_for_its_queue() -> None:
    existing = ["demo-i1pg-coder", "demo-i1pg-solver"]
    assert changes(BODY, SPEC, [], {}, existing) == ([], existing)
    held = JobState("demo-i1-proposer-grpo", GRPO.name, 1, "waiting", suspended=True)
    assert changes(BODY, SPEC, [GRPO], {GRPO.name: held}, existing) == ([], existing)
    queued = RunSpec(iterations=1, cluster={"queue": "gpus"})
    assert changes(BODY, queued, [GRPO], {}, []) == ([], [])  # its Job is not admitted yet
