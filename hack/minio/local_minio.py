"""A real MinIO server on 127.0.0.1 for tests: start, stop (an outage), start again on the same
port and data, stop for good. Built by `hack/build-tool.sh minio`; processes are supervised like the
control plane's (hack/cluster/supervise.py). Standard library only.

    python hack/minio/local_minio.py up RUN_DIR     prints the endpoint; `down RUN_DIR` stops it
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cluster"))
import supervise  # noqa: E402
from supervise import ClusterError  # noqa: E402

NAME = "minio"


@dataclass
class MinioServer:
    """One MinIO process serving `run_dir/data`; credentials are per server, random."""

    run_dir: Path
    binary: Path
    port: int
    access_key: str
    secret_key: str
    tie_to_parent: bool = True
    """Stop MinIO when the Python process that started it dies (tests); the CLI leaves it up."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a client needs: the variables mmzero's S3 store reads."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def start(self, timeout: float = 60) -> None:
        """Start (or restart after `stop`) and return once MinIO answers its readiness probe."""
        console = supervise.free_ports(1)[0]
        supervise.spawn(
            self.run_dir,
            NAME,
            [
                str(self.binary),
                "server",
                str(self.run_dir / "data"),
                "--address",
                f"127.0.0.1:{self.port}",
                "--console-address",
                f"127.0.0.1:{console}",
                "--quiet",
            ],
            tie_to_parent=self.tie_to_parent,
            env={
                "MINIO_ROOT_USER": self.access_key,
                "MINIO_ROOT_PASSWORD": self.secret_key,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
            },
        )
        supervise.wait(
            self._ready,
            "MinIO readiness",
            time.monotonic() + timeout,
            self.run_dir,
            NAME,
        )

    def _ready(self) -> bool:
        supervise.http_get(f"{self.endpoint}/minio/health/ready")  # raises until it is
        return True

    def stop(self) -> None:
        """Stop the process; its data stays for the next `start`."""
        for name, pid in supervise.running(self.run_dir):
            if name == NAME:
                supervise.stop(name, pid)

    def make_bucket(self, bucket: str) -> None:
        """Create `bucket` (MinIO's data directory layout: one directory per bucket)."""
        from minio import Minio

        Minio(
            f"127.0.0.1:{self.port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
        ).make_bucket(bucket)


def build() -> Path:
    """Build (or find cached) MinIO with `hack/build-tool.sh minio`; return the binary."""
    result = subprocess.run(
        ["bash", str(HERE.parent / "build-tool.sh"), "minio"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ClusterError(f"hack/build-tool.sh minio failed (exit {result.returncode}):\n{tail}")
    return Path(result.stdout.strip().splitlines()[-1])


def up(run_dir: Path, binary: Path | None = None, *, tie_to_parent: bool = True) -> MinioServer:
    """A fresh MinIO with random credentials, serving `run_dir/data`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    server = MinioServer(
        run_dir,
        binary or build(),
        supervise.free_ports(1)[0],
        access_key="mmzero-" + secrets.token_hex(4),
        secret_key=secrets.token_hex(16),
        tie_to_parent=tie_to_parent,
    )
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "down":
        supervise.stop_all(args.run_dir)
        return 0
    server = up(args.run_dir, tie_to_parent=False)
    for name, value in server.env().items():
        print(f"export {name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
