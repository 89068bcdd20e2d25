"""Process supervision for hack/cluster/cluster.py: start binaries with logs under a run dir,
record their pids in run_dir/state.json so a later `down` (another process) can stop them, and
wait for readiness with deadlines instead of sleeps. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1
# Processes this Python process started, kept so they are reaped when they exit.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached; the message says which part."""


def read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(run_dir: Path, **changes: object) -> None:
    (run_dir / "state.json").write_text(json.dumps(read_state(run_dir) | changes, indent=2))


def running(run_dir: Path) -> list[tuple[str, int]]:
    """(name, pid) of the recorded processes still alive and still running the recorded binary."""
    alive = []
    for name, (pid, binary) in read_state(run_dir).get("processes", {}).items():
        if pid in _CHILDREN:
            # Our own child: its Popen is authoritative. Its /proc cmdline can still read empty
            # just after Popen returns, since a vfork parent resumes before exec sets up argv.
            ours = True
        else:
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            ours = argv0 == binary  # a reused pid runs another binary: leave it alone
        if ours and not exited(pid):
            alive.append((name, pid))
    return alive


def exited(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is not None  # also reaps it
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop(name: str, pid: int, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not exited(pid):
        time.sleep(POLL_SECONDS)
    if not exited(pid):
        print(f"{name} (pid {pid}) ignored SIGTERM for {grace:.0f} s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, KeyError):
            _CHILDREN[pid].wait(timeout=grace)
    _CHILDREN.pop(pid, None)


# Looked up once here: the child calls it between fork and exec, where little is safe to do.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """In a child between fork and exec: get SIGTERM when the parent process dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    run_dir: Path,
    name: str,
    command: list[str],
    *,
    tie_to_parent: bool,
    env: dict[str, str] | None = None,
) -> None:
    """Start `command` with its output in run_dir/logs/<name>.log and record its pid.

    With `tie_to_parent` the process gets SIGTERM when this Python process dies.
    """
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    with (run_dir / "logs" / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C in the shell that ran `up` must not reach it
            preexec_fn=die_with_parent if tie_to_parent else None,
        )
    _CHILDREN[proc.pid] = proc
    processes = read_state(run_dir).get("processes", {})
    write_state(run_dir, processes=processes | {name: [proc.pid, command[0]]})


def stop_all(run_dir: Path) -> None:
    """Stop every recorded process that still runs, newest first."""
    for name, pid in reversed(running(run_dir)):
        stop(name, pid)


def log_tail(run_dir: Path, name: str, lines: int = 20) -> str:
    path = run_dir / "logs" / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])


def wait(
    check: Callable[[], bool], what: str, deadline: float, run_dir: Path, name: str = ""
) -> None:
    """Poll `check` until it holds; fail at `deadline`, or at once if process `name` has exited.

    Errors raised by `check` (connection refused, HTTP 500, kubectl failing) mean "not yet".
    """
    while True:
        with contextlib.suppress(OSError, ClusterError, subprocess.SubprocessError, ValueError):
            if check():
                return
        if name and name not in dict(running(run_dir)):
            raise ClusterError(f"{name} exited while waiting for {what}; {log_tail(run_dir, name)}")
        if time.monotonic() > deadline:
            tail = log_tail(run_dir, name) if name else ""
            raise ClusterError(f"timed out waiting for {what}; {tail}")
        time.sleep(POLL_SECONDS)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held open together, so they are distinct)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def http_get(url: str, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.read().decode()
