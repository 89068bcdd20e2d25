"""Operator at scale: many MMZeroRuns created at once on the local control plane (kwok nodes).

Starts the hack/cluster control plane and the operator (`kopf run`, one namespace), creates N
one-iteration runs back to back (one API call each, as fast as the API server takes them), and
polls every 0.2 s until each run has its first stage Job. Reports the time from each run's
create call to its first Job (p50, p99, max; 0.2 s resolution), the
operator's reconcile time (from its /metrics histogram), its Kubernetes API calls per run,
reconcile errors and its resident memory. Nothing plays the stages, so each run stays at its
first stage: this measures admission of new runs, the operator's busiest moment.

Usage: `uv run python benchmarks/operator_scale.py [--runs 100] [--settle 30]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
import cluster as local_cluster  # noqa: E402

from mmzero_operator.crd import CHART_CRD  # noqa: E402

NAMESPACE = "bench"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _runs(count: int) -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "mmzero.dev/v1alpha1",
            "kind": "MMZeroRun",
            "metadata": {"name": f"run-{i:03d}", "namespace": NAMESPACE},
            "spec": {"model": "builtin:tiny", "iterations": 1},
        }
        for i in range(count)
    ]


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _sum(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after the last Job")
    args = parser.parse_args()

    bin_dir = local_cluster.build()
    with tempfile.TemporaryDirectory(prefix="mmzero-scale-") as scratch:
        run_dir = Path(scratch)
        cluster = local_cluster.up(run_dir / "cluster", bin_dir, tie_to_parent=True)
        try:
            cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CHART_CRD))
            cluster.kubectl("wait", "--for=condition=Established", "crd/mmzeroruns.mmzero.dev")
            cluster.kubectl("create", "namespace", NAMESPACE)
            port = _free_port()
            env = {
                **os.environ,
                "KUBECONFIG": str(cluster.kubeconfig),
                "MMZERO_STORE_ROOT": str(run_dir / "store"),
                "MMZERO_METRICS_PORT": str(port),
            }
            command = [sys.executable, "-m", "kopf", "run", "-m", "mmzero_operator.handlers",
                       "--standalone", "--namespace", NAMESPACE]  # fmt: skip
            with (run_dir / "operator.log").open("wb") as log:
                operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(5)  # the operator's start-up: watches established
            before = _metrics(port)

            # Poll with an in-process client: a kubectl process per poll would itself take a
            # core of this 2-core machine.
            from kubernetes import client, config

            api_client = config.new_client_from_config(str(cluster.kubeconfig))
            jobs_api = client.BatchV1Api(api_client)
            runs_api = client.CustomObjectsApi(api_client)
            created: dict[str, float] = {}
            start = time.monotonic()
            for run in _runs(args.runs):  # one create call each, timed when it returns
                runs_api.create_namespaced_custom_object(
                    "mmzero.dev", "v1alpha1", NAMESPACE, "mmzeroruns", run
                )
                created[run["metadata"]["name"]] = time.monotonic()
            first_job: dict[str, float] = {}
            deadline = time.monotonic() + 300
            while len(first_job) < args.runs and time.monotonic() < deadline:
                listed = jobs_api.list_namespaced_job(NAMESPACE, _preload_content=False)
                now = time.monotonic()
                for job in json.loads(listed.data)["items"]:
                    run = job["metadata"]["labels"]["mmzero.dev/run"]
                    first_job.setdefault(run, now - created[run])
                time.sleep(0.2)
            time.sleep(args.settle)
            after = _metrics(port)
            rss = _rss_mib(operator.pid)
            operator.terminate()
            operator.wait(30)
        finally:
            local_cluster.down(run_dir / "cluster")

    latencies = sorted(first_job.values())
    reconciles = _sum(after, "mmzero_operator_reconcile_duration_seconds_count") - _sum(
        before, "mmzero_operator_reconcile_duration_seconds_count"
    )
    seconds = _sum(after, "mmzero_operator_reconcile_duration_seconds_sum") - _sum(
        before, "mmzero_operator_reconcile_duration_seconds_sum"
    )
    calls = _sum(after, "mmzero_operator_api_requests_total") - _sum(
        before, "mmzero_operator_api_requests_total"
    )
    errors = _sum(after, "mmzero_operator_reconcile_errors_total")
    p99 = (
        latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else float("nan")
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.runs} runs at once")
    print("| figure | value |")
    print("|---|---|")
    print(f"| runs with a first Job | {len(latencies)}/{args.runs} |")
    if latencies:
        print(f"| create -> first Job, p50 | {statistics.median(latencies):.2f} s |")
        print(f"| create -> first Job, p99 | {p99:.2f} s |")
        print(f"| create -> first Job, max | {latencies[-1]:.2f} s |")
        print(f"| creating all {args.runs} runs took | {max(created.values()) - start:.2f} s |")
    print(f"| reconciles (incl. {args.settle:.0f} s of timers) | {reconciles:.0f} |")
    print(f"| mean reconcile time | {seconds / max(reconciles, 1) * 1000:.1f} ms |")
    print(f"| API calls per run (reconciles only) | {calls / args.runs:.1f} |")
    print(f"| reconcile errors | {errors:.0f} |")
    print(f"| operator resident memory | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
