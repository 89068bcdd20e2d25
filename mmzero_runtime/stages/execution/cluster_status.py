"""`mmzero status NAME`: one line about a run on a cluster, read through kubectl.

The operator keeps the run's whole state in its status (phase, stage, attempts, ETA,
conditions), so the line is a view of that object; no client library is needed beyond the
kubectl a cluster user already has.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from mmzero_runtime.stages.errors import StageError


def fetch(name: str, namespace: str | None) -> dict[str, Any]:
    """The MMZeroRun object `name`, via `kubectl get -o json`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise StageError(
            f"{name!r} is not a run directory, and kubectl is not installed to look for a run of "
            "that name on a cluster"
        )
    command = [kubectl, "get", "mmzerorun", name, "-o", "json"]
    if namespace:
        command += ["-n", namespace]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise StageError(
            f"{name!r} is not a run directory, and kubectl could not get a run of that name: "
            f"{done.stderr.strip()}"
        )
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def status_line(obj: dict[str, Any]) -> str:
    """`<run>: <phase>, iteration I, stage S (attempt A), D/T stages[, ETA][, N alarm(s):
    names][: message]`."""
    status = obj.get("status") or {}
    name = obj["metadata"]["name"]
    phase = status.get("phase", "Pending")
    parts = [f"{name}: {phase}"]
    if "stage" in status:
        attempt = (status.get("attempts") or {}).get(status["stage"], 1)
        retry = f" (attempt {attempt})" if attempt > 1 else ""
        parts.append(f"iteration {status.get('iteration')}, stage {status['stage']}{retry}")
    if "stagesTotal" in status:
        parts.append(f"{status.get('stagesDone', 0)}/{status['stagesTotal']} stages")
    if status.get("eta") and phase == "Running":
        parts.append(f"ETA {status['eta']}")
    blocked = [
        c
        for c in status.get("conditions") or []
        if c["type"] == "PodsBlocked" and c["status"] == "True"
    ]
    alarms = status.get("alarms") or []
    if alarms:
        parts.append(f"{len(alarms)} alarm(s): " + ", ".join(sorted({a["name"] for a in alarms})))
    line = ", ".join(parts)
    if phase in ("Failed", "Stopped") or blocked:
        line += f": {(blocked[0]['message'] if blocked else status.get('message', ''))}"
    return line
