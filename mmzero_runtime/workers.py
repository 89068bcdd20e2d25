"""A persistent pool of killable worker processes for untrusted or unbounded work.

Rendering model-written SVG and grading model-written maths can hang, eat memory or crash the
interpreter (reference §13.17, user-asks §6.2). Each task here runs in a long-lived child
process under resource limits; the parent enforces a wall-clock deadline per task from outside,
kills a worker that passes it and starts a replacement, so one bad item loses only itself.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

log = logging.getLogger(__name__)

Failure = Literal["timeout", "crash", "memory", "error"]


class WorkerStartError(RuntimeError):
    """A worker died or hung before it was ready (import or initializer failure)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied inside each worker process (None leaves a limit unchanged)."""

    memory_bytes: int | None = None
    """RLIMIT_AS: address space; an allocation past it raises MemoryError."""
    cpu_seconds_per_task: int | None = None
    """RLIMIT_CPU soft limit, re-armed before each task; SIGXCPU kills a runaway worker."""
    open_files: int | None = 64
    """RLIMIT_NOFILE."""
    file_bytes: int | None = None
    """RLIMIT_FSIZE: the largest file the worker may write."""


@dataclass(frozen=True)
class TaskResult:
    """What happened to one task: a value, or a failure kind with a detail."""

    value: Any = None
    failure: Failure | None = None
    detail: str = ""
    seconds: float = 0.0
    exit_code: int | None = None
    """Exit status of a worker that died on this task (negative: the signal that killed it)."""

    @property
    def ok(self) -> bool:
        return self.failure is None


def _apply_limits(limits: Limits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    if limits.open_files is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    if limits.file_bytes is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))


def _arm_cpu_limit(seconds: int | None) -> None:
    """Allow `seconds` more CPU time from now; the hard limit stays unlimited for re-arming."""
    if seconds is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (used + seconds, resource.RLIM_INFINITY))


def _worker_main(
    conn: Connection,
    task: Callable[[Any], Any],
    limits: Limits,
    initializer: Callable[[], None] | None,
    workdir: str | None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    if initializer is not None:
        initializer()
    _apply_limits(limits)
    try:
        conn.send(("ready", None))  # start-up (imports, initializer) is not charged to a task
    except (BrokenPipeError, OSError):
        return  # the pool closed while this worker was starting
    while True:
        try:
            payload = conn.recv()
        except EOFError:
            return
        _arm_cpu_limit(limits.cpu_seconds_per_task)
        try:
            reply: tuple[str, Any] = ("ok", task(payload))
        except MemoryError:
            reply = ("memory", "ran out of memory (worker memory limit)")
        except Exception as error:
            reply = ("error", f"{type(error).__name__}: {error}"[:500])
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", "ran out of memory while returning the result"))
        if reply[0] == "memory":
            return  # a worker that hit its memory limit is not trusted with another task


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    """Set once the worker has imported, initialised and applied its limits."""
    index: int | None = None
    started: float = 0.0
    deadline: float = 0.0
    """Of the task in hand, or of start-up while not yet ready."""
    tasks_done: int = field(default=0)


class WorkerPool:
    """Runs `task(payload)` in persistent child processes with a per-task wall-clock deadline.

    `task` and `initializer` must be importable module-level functions. Results come back in
    input order; a task that times out, crashes its worker or exceeds the memory limit becomes a
    failed TaskResult and its worker is replaced, while the other tasks go on. Tasks go only to
    workers that reported ready, so start-up (imports, initializer) never counts against a
    task's deadline; a worker that cannot start raises WorkerStartError.
    """

    def __init__(
        self,
        task: Callable[[Any], Any],
        *,
        workers: int,
        timeout_seconds: float,
        limits: Limits | None = None,
        initializer: Callable[[], None] | None = None,
        workdir: str | None = None,
        max_tasks_per_worker: int = 500,
        startup_timeout_seconds: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers: got {workers}, need at least 1")
        self._task = task
        self._size = workers
        self._timeout = timeout_seconds
        self._limits = limits or Limits()
        self._initializer = initializer
        self._workdir = workdir
        self._max_tasks = max_tasks_per_worker
        self._startup_timeout = startup_timeout_seconds
        self._context = multiprocessing.get_context("forkserver")
        self._workers: list[_Worker] = []
        self.replaced = 0
        """Workers killed or lost and replaced since the pool started."""

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, slot: int) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        workdir = None if self._workdir is None else os.path.join(self._workdir, f"w{slot}")
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._task, self._limits, self._initializer, workdir),
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent, deadline=time.monotonic() + self._startup_timeout)

    def _ensure_started(self) -> None:
        while len(self._workers) < self._size:
            self._workers.append(self._spawn(len(self._workers)))

    def _replace(self, slot: int) -> None:
        """Kill a worker and start its successor; tasks go to the successor once it is ready."""
        old = self._workers[slot]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(timeout=5)
        old.conn.close()
        self._workers[slot] = self._spawn(slot)
        self.replaced += 1

    def _check_started(self, readable: list[Any]) -> None:
        """Mark workers whose ready message arrived; a worker that cannot start is fatal."""
        for worker in self._workers:
            if worker.ready:
                continue
            message: object = None
            if worker.conn in readable:
                with contextlib.suppress(EOFError, OSError):  # died while starting
                    message = worker.conn.recv()
            elif time.monotonic() < worker.deadline:
                continue
            worker.ready = message == ("ready", None)
            if not worker.ready:
                worker.process.kill()
                worker.process.join(timeout=5)
                raise WorkerStartError(
                    f"a worker did not start ({_describe_exit(worker.process.exitcode)}; "
                    f"start-up limit {self._startup_timeout:g} s); check that the task's module "
                    "imports and the initializer succeeds in a fresh process"
                )

    def _dispatch(self, items: list[Any], pending: list[int], busy: dict[int, _Worker]) -> None:
        """Hand the next pending items to ready, idle workers; the deadline starts now."""
        for slot, worker in enumerate(self._workers):
            if not pending or not worker.ready or slot in busy:
                continue
            index = pending.pop()
            worker.index, worker.started = index, time.monotonic()
            worker.deadline = worker.started + self._timeout
            try:
                worker.conn.send(items[index])
            except (BrokenPipeError, OSError):
                self._replace(slot)
                pending.append(index)
                continue
            busy[slot] = worker

    def map(self, payloads: Sequence[Any] | Iterable[Any]) -> list[TaskResult]:
        """Run every payload; never raises for a bad item."""
        items = list(payloads)
        results: list[TaskResult | None] = [None] * len(items)
        self._ensure_started()
        pending = list(range(len(items)))
        pending.reverse()
        busy: dict[int, _Worker] = {}
        while pending or busy:
            self._dispatch(items, pending, busy)
            starting = [w for w in self._workers if not w.ready]
            watched = list(busy.values()) + starting
            wait_for = max(0.0, min(w.deadline for w in watched) - time.monotonic())
            readable = wait([w.conn for w in watched], timeout=wait_for)
            for slot, worker in list(busy.items()):
                item = worker.index
                assert item is not None
                elapsed = time.monotonic() - worker.started
                if worker.conn in readable:
                    results[item] = self._collect(slot, worker, elapsed)
                    del busy[slot]
                elif time.monotonic() >= worker.deadline:
                    log.warning(
                        "task timed out and its worker was killed index=%d seconds=%.1f",
                        item,
                        elapsed,
                    )
                    results[item] = TaskResult(
                        failure="timeout",
                        detail=f"no result within {self._timeout:g} s; worker killed",
                        seconds=elapsed,
                    )
                    self._replace(slot)
                    del busy[slot]
            self._check_started(readable)
        return [r for r in results if r is not None]

    def _collect(self, slot: int, worker: _Worker, elapsed: float) -> TaskResult:
        try:
            status, value = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            code = worker.process.exitcode
            self._replace(slot)
            reason = _describe_exit(code)
            failure: Failure = "memory" if code == -signal.SIGKILL else "crash"
            return TaskResult(failure=failure, detail=reason, seconds=elapsed, exit_code=code)
        worker.tasks_done += 1
        if status == "memory" or worker.tasks_done >= self._max_tasks:
            self._replace(slot)
        if status == "ok":
            return TaskResult(value=value, seconds=elapsed)
        return TaskResult(failure=status, detail=str(value), seconds=elapsed)

    def close(self) -> None:
        """Stop every worker."""
        for worker in self._workers:
            worker.conn.close()
        for worker in self._workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
        self._workers.clear()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "worker stopped answering"
    if code < 0:
        name = signal.Signals(-code).name
        if -code == signal.SIGXCPU:
            return f"worker killed by {name}: CPU-time limit passed"
        return f"worker killed by {name}"
    return f"worker exited with code {code}"
