"""Readiness of the services stages wait for: servers and the shared render service."""

from __future__ import annotations

from mmzero_operator import conditions as reasons
from mmzero_operator.observe import PodFact
from mmzero_operator.policies.readiness import render_ready, servers_ready

OOM = PodFact("s-1", detail="pod s-1 exited 137 (OOMKilled)", failed=True)
PULL = PodFact("s-2", reasons.IMAGE_PULL, "ErrImagePull", 1.0)


def test_servers_are_ready_unless_a_pod_of_theirs_is_in_trouble() -> None:
    assert servers_ready({}, set()).reason == reasons.NO_SERVERS
    assert servers_ready({"s": [PodFact("s-0")]}, {"s"}).true
    failed = servers_ready({"s": [OOM, PULL], "gone": [PULL]}, {"s"})
    assert (failed.true, failed.reason) == (False, reasons.SERVER_POD_FAILED)
    assert failed.message.startswith("server s: pod s-1 exited 137 (OOMKilled); server s: ")
    assert servers_ready({"s": [PULL]}, {"s"}).reason == reasons.SERVER_POD_BLOCKED


def test_render_readiness_is_not_watched_without_its_pods() -> None:
    assert render_ready(None).reason == reasons.NOT_WATCHED
    assert render_ready([]).reason == reasons.READY
    crashed = render_ready([OOM])
    assert (crashed.true, crashed.reason) == (False, reasons.RENDER_POD_FAILED)
    assert "render.resources.limits.memory" in crashed.message
