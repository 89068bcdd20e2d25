"""Operator at scale: many MMZeroRuns created at once on the local control plane (kwok nodes).

Starts the hack/cluster control plane and the operator (`kopf run`, one namespace), creates N
one-iteration runs back to back (one API call each, as fast as the API server takes them), and
watches the namespace's Jobs until each run has its first stage Job. Reports the time from each
run's create call to the watch event of its first Job (p50, p99, max), the
operator's reconcile time (from its /metrics histogram), its Kubernetes API calls per run,
reconcile errors and its resident memory. Nothing plays the stages, so each run stays at its
first stage: this measures admission of new runs, the operator's busiest moment.

`--floor` measures the control plane instead of the operator, on the same runs: no operator
runs, and the benchmark itself creates, for each run as soon as its create call returns, the
objects the operator's first reconcile makes (run-file ConfigMap, the first stage's Job and its
frozen-role servers), in as many threads as the operator has. No read, no status, no kopf: the
latency below which no operator on this machine can admit these runs.

`--operator-at REV` runs the operator package of another git revision (the rest is this
checkout's), to compare two versions on the same machine and harness.

Usage: `uv run python benchmarks/operator_scale.py [--runs 100] [--settle 30] [--floor]
[--operator-at REV]`
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
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
import cluster as local_cluster  # noqa: E402
import supervise  # noqa: E402

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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _watch_jobs(jobs_api: Any, first_seen: dict[str, float], watching: threading.Event) -> None:
    """Record when each run's first Job is announced (re-watching on the server's timeouts),
    until the cluster goes away."""
    version = jobs_api.list_namespaced_job(NAMESPACE).metadata.resource_version
    while True:
        watching.set()
        try:
            stream = jobs_api.list_namespaced_job(
                NAMESPACE, watch=True, resource_version=version, timeout_seconds=300,
                allow_watch_bookmarks=False, _preload_content=False,
            )  # fmt: skip
            for line in stream:
                event = json.loads(line)
                job = event["object"]
                version = job["metadata"]["resourceVersion"]
                if event["type"] == "ADDED":
                    run = job["metadata"]["labels"]["mmzero.dev/run"]
                    first_seen.setdefault(run, time.monotonic())
        except Exception:  # the cluster was stopped: the benchmark is over
            return


def _admit_directly(api_client: Any, body: dict[str, Any]) -> None:
    """What the operator's first reconcile of `body` creates, created with no reads."""
    from kubernetes import client

    from mmzero_operator import reconcile

    decision = reconcile.reconcile(body, [], [], time.time())
    creators = {
        "ConfigMap": client.CoreV1Api(api_client).create_namespaced_config_map,
        "Job": client.BatchV1Api(api_client).create_namespaced_job,
        "Deployment": client.AppsV1Api(api_client).create_namespaced_deployment,
        "Service": client.CoreV1Api(api_client).create_namespaced_service,
        "NetworkPolicy": client.NetworkingV1Api(api_client).create_namespaced_network_policy,
    }
    assert decision.config_map is not None
    for obj in [decision.config_map, *decision.create]:
        creators[obj["kind"]](NAMESPACE, obj, _preload_content=False)


def _operator_at(revision: str, into: Path) -> Path:
    """The operator package as it was at git `revision`, for a comparison on the same machine."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "operator"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "operator"


def _start_operator(
    run_dir: Path, kubeconfig: Path, port: int, revision: str | None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "MMZERO_STORE_ROOT": str(run_dir / "store"),
        "MMZERO_METRICS_PORT": str(port),
    }
    if revision is not None:
        env["PYTHONPATH"] = str(_operator_at(revision, run_dir / "revision"))
    command = [sys.executable, "-m", "kopf", "run", "-m", "mmzero_operator.handlers",
               "--standalone", "--namespace", NAMESPACE]  # fmt: skip
    with (run_dir / "operator.log").open("wb") as log:
        operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:  # /metrics answers once the start-up handler ran; the watches follow it
        try:
            _metrics(port)
            break
        except OSError:
            if time.monotonic() > deadline or operator.poll() is not None:
                raise RuntimeError(
                    f"the operator did not start; see {run_dir / 'operator.log'}"
                ) from None
            time.sleep(0.5)
    time.sleep(3)
    return operator


STOP_GRACE = 30
"""Seconds the operator gets to exit after SIGTERM, as a pod's default grace period."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after the last Job")
    parser.add_argument("--floor", action="store_true", help="the control plane, no operator")
    parser.add_argument("--operator-at", metavar="REV", help="run the operator of a git revision")
    args = parser.parse_args()

    from kubernetes import client, config

    from mmzero_operator.kube import WORKERS

    bin_dir = local_cluster.build()
    with tempfile.TemporaryDirectory(prefix="mmzero-scale-") as scratch:
        run_dir = Path(scratch)
        cluster = local_cluster.up(run_dir / "cluster", bin_dir, tie_to_parent=True)
        try:
            cluster.install_crd(ROOT / CHART_CRD, "mmzeroruns.mmzero.dev")
            cluster.kubectl("create", "namespace", NAMESPACE)
            port = _free_port()
            operator = (
                None
                if args.floor
                else _start_operator(run_dir, cluster.kubeconfig, port, args.operator_at)
            )
            before = {} if operator is None else _metrics(port)
            processes = supervise.read_state(run_dir / "cluster")["processes"]
            pids = {name: pid for name, (pid, _) in processes.items()}
            pids |= {"operator": operator.pid} if operator else {"benchmark": os.getpid()}
            cpu_at_start = {name: _cpu_seconds(pid) for name, pid in pids.items()}

            # One watch of the Jobs, in process: polling lists (or a kubectl process per poll)
            # would load the API server that the operator shares these 2 cores with.
            api_client = config.new_client_from_config(str(cluster.kubeconfig))
            runs_api = client.CustomObjectsApi(api_client)
            first_seen: dict[str, float] = {}
            watching = threading.Event()
            threading.Thread(
                target=_watch_jobs,
                args=(client.BatchV1Api(api_client), first_seen, watching),
                daemon=True,
            ).start()
            watching.wait(30)
            pool = ThreadPoolExecutor(WORKERS)
            configuration = client.Configuration()
            config.load_kube_config(str(cluster.kubeconfig), client_configuration=configuration)
            configuration.connection_pool_maxsize = WORKERS
            direct = client.ApiClient(configuration)
            created: dict[str, float] = {}
            start = time.monotonic()
            for run in _runs(args.runs):  # one create call each, timed when it returns
                body = runs_api.create_namespaced_custom_object(
                    "mmzero.dev", "v1alpha1", NAMESPACE, "mmzeroruns", run
                )
                created[body["metadata"]["name"]] = time.monotonic()
                if args.floor:
                    pool.submit(_admit_directly, direct, body)
            deadline = time.monotonic() + 300
            while len(first_seen) < args.runs and time.monotonic() < deadline:
                time.sleep(0.2)
            first_job = {run: first_seen[run] - created[run] for run in first_seen}
            pool.shutdown()
            time.sleep(args.settle)
            after = {} if operator is None else _metrics(port)
            rss = 0.0 if operator is None else _rss_mib(operator.pid)
            cpu = {name: _cpu_seconds(pid) - cpu_at_start[name] for name, pid in pids.items()}
            stopped = None  # seconds from SIGTERM to exit; None: killed after the grace
            if operator is not None:
                asked = time.monotonic()
                operator.terminate()
                try:
                    operator.wait(STOP_GRACE)
                    stopped = time.monotonic() - asked
                except subprocess.TimeoutExpired:
                    operator.kill()
                    operator.wait()
        finally:
            local_cluster.down(run_dir / "cluster")

    latencies = sorted(first_job.values())
    p99 = (
        latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else float("nan")
    )
    who = "the control plane alone (--floor)" if args.floor else "the operator"
    if args.operator_at:
        who += f" at {args.operator_at}"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.runs} runs at once, {who}")
    print("| figure | value |")
    print("|---|---|")
    print(f"| runs with a first Job | {len(latencies)}/{args.runs} |")
    if latencies:
        print(f"| create -> first Job, p50 | {statistics.median(latencies):.2f} s |")
        print(f"| create -> first Job, p99 | {p99:.2f} s |")
        print(f"| create -> first Job, max | {latencies[-1]:.2f} s |")
        print(f"| creating all {args.runs} runs took | {max(created.values()) - start:.2f} s |")
        last = max(first_seen.values()) - start
        print(f"| first create -> the last run's first Job | {last:.2f} s |")
    busiest = sorted(cpu.items(), key=lambda item: -item[1])
    print(f"| CPU seconds, runs created to end ({args.settle:.0f} s settle) | "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in busiest) + " |")  # fmt: skip
    if operator is None:
        return
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
    print(f"| reconciles (incl. {args.settle:.0f} s of timers) | {reconciles:.0f} |")
    print(f"| mean reconcile time | {seconds / max(reconciles, 1) * 1000:.1f} ms |")
    by_kind = {  # 'verb="GET",resource="jobs"' -> 'GET jobs'
        " ".join(
            part.partition("=")[2].strip('"') for part in key[key.index("{") + 1 : -1].split(",")
        ): value - before.get(key, 0.0)
        for key, value in after.items()
        if key.startswith("mmzero_operator_api_requests_total{")
    }
    kinds = ", ".join(
        f"{kind} {count / args.runs:.1f}"
        for kind, count in sorted(by_kind.items(), key=lambda item: -item[1])
        if count
    )
    print(f"| API calls per run (reconciles only) | {calls / args.runs:.1f}: {kinds} |")
    print(f"| reconcile errors | {errors:.0f} |")
    print(f"| operator resident memory | {rss:.0f} MiB |")
    stop = f"{stopped:.1f} s" if stopped is not None else f"not within {STOP_GRACE} s, killed"
    print(f"| operator exit after SIGTERM | {stop} |")


if __name__ == "__main__":
    main()
