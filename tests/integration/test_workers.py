"""The killable worker pool: one bad task loses only itself, and the pool keeps serving."""

from __future__ import annotations

import os
import time

import pytest

from mmzero_runtime.workers import Limits, WorkerPool, WorkerStartError

pytestmark = pytest.mark.integration


def _task(payload: object) -> object:
    """Misbehaves on command; otherwise doubles its input."""
    match payload:
        case "hang":
            time.sleep(60)
        case "crash":
            os._exit(3)
        case "allocate":
            return len(bytearray(2_000_000_000))
        case "raise":
            raise ValueError("bad item")
    assert isinstance(payload, int)
    return payload * 2


def _broken_initializer() -> None:
    raise RuntimeError("cannot start")


def test_pool_bad_tasks_fail_alone_and_results_keep_input_order() -> None:
    limits = Limits(memory_bytes=512 * 1024 * 1024)
    with WorkerPool(_task, workers=2, timeout_seconds=3, limits=limits) as pool:
        results = pool.map([1, "hang", 2, "crash", "allocate", "raise", 3])
        after = pool.map(list(range(20)))
    assert [r.value for r in results if r.ok] == [2, 4, 6]
    failures = {i: r.failure for i, r in enumerate(results) if not r.ok}
    assert failures == {1: "timeout", 3: "crash", 4: "memory", 5: "error"}
    assert "ValueError: bad item" in results[5].detail
    assert results[3].exit_code == 3
    assert pool.replaced >= 3  # the hung, crashed and out-of-memory workers were replaced
    assert [r.value for r in after] == [2 * i for i in range(20)]


def test_pool_worker_that_cannot_start_raises_clear_error() -> None:
    with (
        pytest.raises(WorkerStartError),
        WorkerPool(_task, workers=1, timeout_seconds=3, initializer=_broken_initializer) as pool,
    ):
        pool.map([1])
