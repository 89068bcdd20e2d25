"""Local Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok run as plain processes on 127.0.0.1, with fake kwok nodes that advertise
GPUs, so Jobs get scheduled, run and complete without Docker or a kubelet.

    python hack/cluster/cluster.py up [--run-dir DIR] [--kubeconfig EXISTING]
    python hack/cluster/cluster.py down [--run-dir DIR]

tests/cluster/conftest.py imports this file, so the CLI and the tests start the same cluster.
Standard library only; certificates come from the openssl command.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import supervise
from supervise import ClusterError, http_get, spawn, wait

__all__ = ["Cluster", "ClusterError", "build", "down", "up"]

HERE = Path(__file__).resolve().parent
DEFAULT_RUN_DIR = Path.home() / ".cache" / "mmzero" / "cluster-run"
GPU_RESOURCE = "nvidia.com/gpu"
# kwok manages only nodes carrying this annotation, and the pods bound to them.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# Every fake node carries this label, so `down` on an external cluster deletes exactly those.
FAKE_NODE_LABEL = "mmzero.dev/fake-node"


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where its files are and how to reach it."""

    run_dir: Path
    kubeconfig: Path
    bin_dir: Path

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the kubectl built with the control plane against this cluster."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get_json(self, *args: str) -> dict:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_for(
        self, args: list[str], check: Callable[[dict], bool], what: str, timeout: float = 60
    ) -> dict:
        """Poll `kubectl get ARGS` until `check(object)` holds; return the object.

        Raises ClusterError naming `what` and showing the last object seen at the deadline.
        """
        deadline, last = time.monotonic() + timeout, None
        while True:
            with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
                last = self.get_json(*args)
                if check(last):
                    return last
            if time.monotonic() > deadline:
                seen = json.dumps(last, indent=1)[-3000:]
                raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}; {seen}")
            time.sleep(supervise.POLL_SECONDS)

    def install_crd(self, manifest: Path, name: str) -> None:
        """Apply a CRD and wait until it serves. Not `kubectl wait --for=condition=...`: that
        fails outright while the new CRD has no conditions yet."""

        self.kubectl("apply", "--server-side", "-f", str(manifest))
        self.wait_for(
            ["crd", name], lambda crd: has_condition(crd, "Established"), f"CRD {name} established"
        )


def has_condition(obj: dict, kind: str) -> bool:
    """Whether an object's status has condition `kind` True (an object with no status or no
    conditions yet has none)."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def build() -> Path:
    """Build (or find cached) binaries with hack/cluster/build.sh; return their directory."""
    result = subprocess.run(
        ["bash", str(HERE / "build.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ClusterError(f"hack/cluster/build.sh failed (exit {result.returncode}):\n{tail}")
    return Path(result.stdout.strip().splitlines()[-1])


def up(
    run_dir: Path = DEFAULT_RUN_DIR,
    bin_dir: Path | None = None,
    *,
    external_kubeconfig: Path | None = None,
    nodes: int = 3,
    gpus_per_node: int = 8,
    timeout: float = 180,
    tie_to_parent: bool = False,
) -> Cluster:
    """Start the control plane in `run_dir` and return once the fake nodes are Ready.

    With `external_kubeconfig` (e.g. a kind cluster), start only kwok and add the fake nodes there.
    With `tie_to_parent`, the processes get SIGTERM if the calling process dies, so a killed test
    run leaves nothing behind; the CLI leaves them running until `down`.
    """
    bin_dir = bin_dir or build()
    if supervise.running(run_dir):
        raise ClusterError(f"a cluster is already running in {run_dir}; run `down` first")
    _remove_run_dir(run_dir)
    run_dir.mkdir(parents=True)
    kubeconfig = (external_kubeconfig or run_dir / "kubeconfig").resolve()
    cluster = Cluster(run_dir, kubeconfig, bin_dir)
    supervise.write_state(
        run_dir,
        bin_dir=str(bin_dir),
        external_kubeconfig=str(kubeconfig) if external_kubeconfig else None,
    )
    deadline = time.monotonic() + timeout
    try:
        if external_kubeconfig is None:
            _start_control_plane(cluster, deadline, tie_to_parent)
        _start_kwok(cluster, tie_to_parent)
        _create_fake_nodes(cluster, nodes, gpus_per_node)
        wait(
            lambda: _ready_nodes(cluster) >= nodes,
            f"{nodes} fake nodes Ready",
            deadline,
            run_dir,
            "kwok",
        )
    except BaseException:
        supervise.stop_all(run_dir)  # keep run_dir: its logs say what went wrong
        raise
    return cluster


def down(run_dir: Path = DEFAULT_RUN_DIR) -> None:
    """Stop every process started in `run_dir` (newest first), then remove `run_dir`."""
    state = supervise.read_state(run_dir)
    if state.get("external_kubeconfig"):
        cluster = Cluster(run_dir, Path(state["external_kubeconfig"]), Path(state["bin_dir"]))
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            cluster.kubectl("delete", "nodes", "-l", FAKE_NODE_LABEL, "--wait=false", timeout=30)
    supervise.stop_all(run_dir)
    _remove_run_dir(run_dir)


def _remove_run_dir(run_dir: Path) -> None:
    """Remove a run dir left by `up`; refuse any other non-empty directory."""
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "state.json").exists():
        raise ClusterError(f"{run_dir} is not empty and holds no cluster; choose another --run-dir")
    shutil.rmtree(run_dir, ignore_errors=True)


def _openssl(*args: str | Path) -> None:
    if shutil.which("openssl") is None:
        raise ClusterError("openssl not found; install it (Debian: apt-get install openssl)")
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _make_pki(pki: Path) -> None:
    """A CA, the API server's serving cert, an admin client cert and a service-account key."""
    pki.mkdir()
    new = ["-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    new += ["-days", "3650"]
    ca = ["-CA", pki / "ca.crt", "-CAkey", pki / "ca.key"]
    leaf = [*ca, "-addext", "basicConstraints=critical,CA:FALSE"]
    _openssl(
        "req", *new, "-keyout", pki / "ca.key", "-out", pki / "ca.crt", "-subj", "/CN=mmzero-ca"
    )
    server_ext = ["-addext", "extendedKeyUsage=serverAuth"]
    server_ext += ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    out = ["-keyout", pki / "apiserver.key", "-out", pki / "apiserver.crt"]
    _openssl("req", *new, *leaf, *out, "-subj", "/CN=kube-apiserver", *server_ext)
    # O=system:masters bypasses RBAC: the admin and every component share this identity.
    out = ["-keyout", pki / "admin.key", "-out", pki / "admin.crt"]
    admin = ["-subj", "/O=system:masters/CN=mmzero-admin"]
    _openssl("req", *new, *leaf, *out, *admin, "-addext", "extendedKeyUsage=clientAuth")
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    _openssl("genpkey", *ec, "-out", pki / "sa.key")
    _openssl("pkey", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub")


def _write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    cluster = {"server": server, "certificate-authority-data": data("ca.crt")}
    user = {"client-certificate-data": data("admin.crt"), "client-key-data": data("admin.key")}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mmzero-local", "cluster": cluster}],
        "users": [{"name": "mmzero-admin", "user": user}],
        "contexts": [
            {"name": "mmzero-local", "context": {"cluster": "mmzero-local", "user": "mmzero-admin"}}
        ],
        "current-context": "mmzero-local",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML, so kubectl reads it
    path.chmod(0o600)


def _start_control_plane(cluster: Cluster, deadline: float, tie: bool) -> None:
    run_dir, pki, bin_dir = cluster.run_dir, cluster.run_dir / "pki", cluster.bin_dir
    _make_pki(pki)
    etcd_port, peer_port, api_port, kcm_port, sched_port = supervise.free_ports(5)
    _write_kubeconfig(cluster.kubeconfig, f"https://127.0.0.1:{api_port}", pki)
    etcd, peer = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"

    etcd_flags = f"""
        --name=node0 --data-dir={run_dir / "etcd"} --log-level=warn
        --listen-client-urls={etcd} --advertise-client-urls={etcd}
        --listen-peer-urls={peer} --initial-advertise-peer-urls={peer}
        --initial-cluster=node0={peer} --unsafe-no-fsync
    """  # no fsync: throwaway test data, and fsync dominates etcd latency on a small VM
    spawn(run_dir, "etcd", [str(bin_dir / "etcd"), *etcd_flags.split()], tie_to_parent=tie)
    wait(
        lambda: json.loads(http_get(f"{etcd}/health"))["health"] == "true",
        "etcd /health",
        deadline,
        run_dir,
        "etcd",
    )

    # --endpoint-reconciler-type=none: the `kubernetes` Service may not point at a loopback IP.
    apiserver_flags = f"""
        --etcd-servers={etcd} --bind-address=127.0.0.1 --secure-port={api_port}
        --advertise-address=127.0.0.1 --endpoint-reconciler-type=none
        --tls-cert-file={pki / "apiserver.crt"} --tls-private-key-file={pki / "apiserver.key"}
        --client-ca-file={pki / "ca.crt"} --authorization-mode=RBAC
        --service-account-key-file={pki / "sa.pub"}
        --service-account-signing-key-file={pki / "sa.key"}
        --service-account-issuer=https://kubernetes.default.svc.cluster.local
        --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true --profiling=false
    """
    command = [str(bin_dir / "kube-apiserver"), *apiserver_flags.split()]
    spawn(run_dir, "kube-apiserver", command, tie_to_parent=tie)
    api_tls = ssl.create_default_context(cafile=pki / "ca.crt")
    api_tls.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    wait(
        lambda: http_get(f"https://127.0.0.1:{api_port}/readyz", api_tls) == "ok",
        "kube-apiserver /readyz",
        deadline,
        run_dir,
        "kube-apiserver",
    )

    common = f"--kubeconfig={cluster.kubeconfig} --leader-elect=false --bind-address=127.0.0.1"
    kcm_flags = f"""
        {common} --secure-port={kcm_port} --profiling=false
        --service-account-private-key-file={pki / "sa.key"} --root-ca-file={pki / "ca.crt"}
        --kube-api-qps=100 --kube-api-burst=200
    """
    command = [str(bin_dir / "kube-controller-manager"), *kcm_flags.split()]
    spawn(run_dir, "kube-controller-manager", command, tie_to_parent=tie)
    command = [str(bin_dir / "kube-scheduler"), *common.split(), f"--secure-port={sched_port}"]
    spawn(run_dir, "kube-scheduler", command, tie_to_parent=tie)
    # Their serving certs are self-signed in memory, and /healthz needs no client identity.
    insecure = ssl._create_unverified_context()
    for name, port in (("kube-controller-manager", kcm_port), ("kube-scheduler", sched_port)):
        url = f"https://127.0.0.1:{port}/healthz"
        wait(lambda url=url: http_get(url, insecure) == "ok", f"{name} /healthz", deadline,
             run_dir, name)  # fmt: skip
    # Pods are admitted only once their ServiceAccount exists; it also shows controllers run.
    wait(
        lambda: cluster.kubectl("get", "serviceaccount", "default", timeout=10).returncode == 0,
        "the default ServiceAccount (made by the controller manager)",
        deadline,
        run_dir,
        "kube-controller-manager",
    )


def _start_kwok(cluster: Cluster, tie: bool) -> None:
    stages = [f"--config={path}" for path in sorted((HERE / "stages").glob("*.yaml"))]
    # Pod IPs are written into status only; nothing listens on them. kwok binds no port here.
    kwok_flags = f"""
        --kubeconfig={cluster.kubeconfig} --manage-all-nodes=false
        --manage-nodes-with-annotation-selector={"=".join(KWOK_NODE_ANNOTATION)}
        --cidr=10.128.0.0/16 --node-ip=10.127.0.1 --node-lease-duration-seconds=40
    """
    command = [str(cluster.bin_dir / "kwok"), *kwok_flags.split(), *stages]
    # KWOK_WORKDIR: ignore the user's ~/.kwok/kwok.yaml, which kwok would load first.
    env = {"KWOK_WORKDIR": str(cluster.run_dir / "kwok")}
    spawn(cluster.run_dir, "kwok", command, tie_to_parent=tie, env=env)


def _create_fake_nodes(cluster: Cluster, count: int, gpus: int) -> None:
    # The shape of an 8-GPU server (224 vCPU, 2 TiB): the reference layout's pods fit as on one.
    capacity = {"cpu": "224", "memory": "2048Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    nodes = []
    for index in range(count):
        name = f"kwok-gpu-{index}"
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        labels |= {"kubernetes.io/arch": "amd64", "type": "kwok", FAKE_NODE_LABEL: "true"}
        annotations = dict([KWOK_NODE_ANNOTATION])
        metadata = {"name": name, "labels": labels, "annotations": annotations}
        # A Node's status may be set on create; kwok's node-initialize stage keeps this capacity.
        status = {"capacity": capacity, "allocatable": capacity}
        nodes.append({"apiVersion": "v1", "kind": "Node", "metadata": metadata, "status": status})
    node_list = {"apiVersion": "v1", "kind": "List", "items": nodes}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(node_list))  # idempotent on reruns


def _ready_nodes(cluster: Cluster) -> int:
    nodes = cluster.get_json("nodes", "-l", FAKE_NODE_LABEL)["items"]
    return sum(has_condition(node, "Ready") for node in nodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--nodes", type=int, default=3, help="fake GPU nodes to create")
    parser.add_argument("--gpus-per-node", type=int, default=8, help=f"{GPU_RESOURCE} per node")
    parser.add_argument(
        "--kubeconfig", type=Path, help="use this existing cluster: start only kwok and the nodes"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            down(args.run_dir)
            return 0
        bin_dir = build()
        start = time.monotonic()
        cluster = up(
            args.run_dir,
            bin_dir,
            external_kubeconfig=args.kubeconfig,
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
        )
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - start
    print(f"cluster up in {elapsed:.1f} s; logs in {cluster.run_dir / 'logs'}", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
