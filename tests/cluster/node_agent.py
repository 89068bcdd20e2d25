"""A small node agent for the cluster tests: it registers one Node and runs the pods bound to it
as local processes, so a run's stage pods really execute `mmzero stage ...` and its servers
really serve, against the real API server, scheduler and controllers.

What it does as a kubelet would: keeps the Node Ready (status and Lease), gives each pod its
own loopback address (127.0.0.10, .11, ...), builds its environment (values, Secret and
ConfigMap references, `envFrom`), materialises its volumes (a ConfigMap as files, an emptyDir as
a directory), runs the container's command with the image mapped to this checkout's virtual
environment, reports Running / Ready (the readiness probe's HTTP GET) / Succeeded / Failed with
the exit code and the log's last lines, and stops and removes pods being deleted. The
endpoint-slice controller then keeps Services' endpoints current from those pod statuses.

What it does not: container isolation, resource limits, image pulls, network policy, and DNS:
a Service URL in a pod's environment or command (`http://<service>:<port>`, or
`<service>.<namespace>.svc` in the pod's own namespace) is rewritten to a ready-or-starting
pod's address behind that Service, `0.0.0.0` to the pod's own address (all pods share the
host's network here), and a mount path to its local directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from base64 import b64decode
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from supervise import die_with_parent

log = logging.getLogger(__name__)

AGENT_LABEL = "mmzero.dev/agent"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pod:
    uid: str
    namespace: str
    name: str
    ip: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    done: bool = False
    probe: dict[str, Any] | None = None
    port_names: dict[str, int] = field(default_factory=dict)


class NodeAgent:
    """Runs the pods bound to Node `name` as processes under `work_dir`."""

    def __init__(self, kubeconfig: Path, name: str, work_dir: Path, venv_bin: Path) -> None:
        api = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.name, self.work_dir, self.venv_bin = name, work_dir, venv_bin
        self.pods: dict[str, _Pod] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._next_ip = 10
        self._beat = 0.0

    def start(self) -> None:
        capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "8"}
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {AGENT_LABEL: "true",
                                                       "kubernetes.io/hostname": self.name}},
            "status": {"capacity": capacity, "allocatable": capacity},
        }  # fmt: skip
        with contextlib.suppress(ApiException):
            self.core.create_node(node)
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for pod in self.pods.values():
            self._kill(pod)
        with contextlib.suppress(ApiException):
            self.core.delete_node(self.name)

    def log_of(self, pod_name: str) -> str:
        for pod in self.pods.values():
            if pod.name == pod_name:
                path = pod.directory / "log"
                return path.read_text(errors="replace") if path.exists() else ""
        return ""

    # The loop: heartbeat, then each pod bound here.

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._beat > 10:
                    self._heartbeat()
                selector = f"spec.nodeName={self.name}"
                for pod in self.core.list_pod_for_all_namespaces(field_selector=selector).items:
                    self._sync(pod)
            except Exception:  # a failed API call is retried on the next pass
                log.exception("node agent pass failed")
            self._stop.wait(0.5)

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        ready = {"type": "Ready", "status": "True", "reason": "AgentReady",
                 "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}  # fmt: skip
        self.core.patch_node_status(self.name, {"status": {"conditions": [ready]}})
        lease = {"metadata": {"name": self.name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40,
                          "renewTime": datetime.now(UTC).isoformat()}}  # fmt: skip
        try:
            self.coordination.patch_namespaced_lease(self.name, "kube-node-lease", lease)
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", lease)

    def _sync(self, pod: Any) -> None:
        uid = pod.metadata.uid
        known = self.pods.get(uid)
        if pod.metadata.deletion_timestamp is not None:
            if known is not None:
                self._kill(known)
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                )
            return
        if known is None:
            if pod.status.phase in ("Succeeded", "Failed"):
                return
            self._start(pod)
        elif not known.done:
            self._watch(known, pod)

    def _start(self, pod: Any) -> None:
        (container,) = pod.spec.containers
        namespace = pod.metadata.namespace
        directory = self.work_dir / f"{namespace}-{pod.metadata.name}"
        mounts = self._volumes(pod, directory)
        known = _Pod(pod.metadata.uid, namespace, pod.metadata.name, "", directory)
        env = self._environment(container, namespace)
        try:
            rewrite = self._rewriter(namespace, mounts)
            command = [rewrite(part) for part in container.command + (container.args or [])]
            env = {key: rewrite(value) for key, value in env.items()}
        except LookupError:  # a Service with no pod yet: try again on the next pass
            shutil.rmtree(directory, ignore_errors=True)
            return
        known.ip = f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        # The pod's own address: what 0.0.0.0 means inside its network namespace.
        command = [part.replace("0.0.0.0", known.ip) for part in command]
        env = {key: value.replace("0.0.0.0", known.ip) for key, value in env.items()}
        if command[0] == "mmzero":  # the image's entrypoint, from this checkout's environment
            command[0] = str(self.venv_bin / "mmzero")
        # The "image": this checkout's environment, and its model cache (builtin:tiny).
        cache = os.environ.get("MMZERO_CACHE_DIR", str(Path.home() / ".cache" / "mmzero"))
        env |= {"PATH": f"{self.venv_bin}:/usr/bin:/bin", "HOME": str(directory),
                "OMP_NUM_THREADS": "1", "MMZERO_CACHE_DIR": cache}  # fmt: skip
        known.port_names = {p.name: p.container_port for p in container.ports or [] if p.name}
        if container.readiness_probe is not None and container.readiness_probe.http_get:
            known.probe = {"path": container.readiness_probe.http_get.path,
                           "port": container.readiness_probe.http_get.port}  # fmt: skip
        with (directory / "log").open("wb") as sink:
            known.process = subprocess.Popen(
                command, env=env, cwd=directory, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,  # no orphans if the test dies
            )  # fmt: skip
        self.pods[known.uid] = known
        known.ready = known.probe is None
        self._report_running(known, container.name)

    def _volumes(self, pod: Any, directory: Path) -> dict[str, Path]:
        """mountPath -> local directory, the volumes made real."""
        directory.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for volume in pod.spec.volumes or []:
            local = directory / "volumes" / volume.name
            local.mkdir(parents=True, exist_ok=True)
            if volume.config_map is not None:
                data = self.core.read_namespaced_config_map(
                    volume.config_map.name, pod.metadata.namespace
                ).data
                for key, value in (data or {}).items():
                    (local / key).write_text(value)
            paths[volume.name] = local
        (container,) = pod.spec.containers
        return {m.mount_path: paths[m.name] for m in container.volume_mounts or []}

    def _environment(self, container: Any, namespace: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.env_from or []:
            if source.secret_ref is not None:
                secret = self.core.read_namespaced_secret(source.secret_ref.name, namespace)
                env |= {k: b64decode(v).decode() for k, v in (secret.data or {}).items()}
            if source.config_map_ref is not None:
                env |= (
                    self.core.read_namespaced_config_map(source.config_map_ref.name, namespace).data
                    or {}
                )
        for item in container.env or []:
            if item.value is not None:
                env[item.name] = item.value
            elif item.value_from is not None and item.value_from.secret_key_ref is not None:
                ref = item.value_from.secret_key_ref
                data = self.core.read_namespaced_secret(ref.name, namespace).data or {}
                env[item.name] = b64decode(data[ref.key]).decode()
        return env

    def _rewriter(self, namespace: str, mounts: dict[str, Path]) -> Any:
        """A function mapping a mount path to its directory and a Service URL to a pod."""
        services = {s.metadata.name: s for s in self.core.list_namespaced_service(namespace).items}

        def address(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in services:  # made with the pod, not yet listed: start it later
                raise LookupError(name)
            selector = services[name].spec.selector or {}
            for known in self.pods.values():
                pod = self._read(known)
                labels = pod.metadata.labels or {} if pod is not None else {}
                if not known.done and all(labels.get(k) == v for k, v in selector.items()):
                    return f"http://{known.ip}:"
            raise LookupError(name)

        def rewrite(text: str) -> str:
            for mount, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
                text = text.replace(mount, str(local))
            # <service>, <service>.<namespace>.svc and the .cluster.local form; one namespace
            own = rf"(?:\.{re.escape(namespace)}\.svc(?:\.cluster\.local)?)?"
            return re.sub(rf"http://([a-z0-9-]+){own}:", address, text)

        return rewrite

    def _read(self, known: _Pod) -> Any:
        try:
            return self.core.read_namespaced_pod(known.name, known.namespace)
        except ApiException:
            return None

    def _watch(self, known: _Pod, pod: Any) -> None:
        assert known.process is not None
        (container,) = pod.spec.containers
        code = known.process.poll()
        if code is not None:
            known.done = True
            self._report_ended(known, container.name, code)
            return
        if not known.ready and known.probe is not None:
            port = known.probe["port"]
            port = known.port_names.get(port, port) if isinstance(port, str) else port
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://{known.ip}:{port}{known.probe['path']}",
                                       timeout=2).close()  # fmt: skip
                known.ready = True
                self._report_running(known, container.name)

    # Pod status, as a kubelet reports it.

    def _report_running(self, known: _Pod, container: str) -> None:
        ready = "True" if known.ready else "False"
        status = {
            "phase": "Running", "podIP": known.ip, "podIPs": [{"ip": known.ip}],
            "hostIP": "127.0.0.1", "startTime": _now(),
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": ready},
                {"type": "Ready", "status": ready},
            ],
            "containerStatuses": [{
                "name": container, "ready": known.ready, "started": True, "restartCount": 0,
                "image": "local", "imageID": "", "state": {"running": {"startedAt": _now()}},
            }],
        }  # fmt: skip
        self._patch(known, status)

    def _report_ended(self, known: _Pod, container: str, code: int) -> None:
        tail = (known.directory / "log").read_text(errors="replace").splitlines()[-20:]
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": "Ready", "status": "False"},
                           {"type": "ContainersReady", "status": "False"}],
            "containerStatuses": [{
                "name": container, "ready": False, "started": False, "restartCount": 0,
                "image": "local", "imageID": "",
                "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                         else "Error", "message": "\n".join(tail)[-4000:],
                                         "startedAt": _now(), "finishedAt": _now()}},
            }],
        }  # fmt: skip
        self._patch(known, status)

    def _patch(self, known: _Pod, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(known.name, known.namespace, {"status": status})

    @staticmethod
    def _kill(known: _Pod) -> None:
        process = known.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        known.done = True
