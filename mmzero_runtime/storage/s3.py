"""The S3 backend of the artifact store (MinIO, or any S3-compatible service).

Same contract as the local store: each object appears whole or not at all (S3 publishes a
single or multipart upload only when it completes), and a stage's manifest is uploaded after
all its files, so a half-uploaded checkpoint is never visible as done. A store that cannot be
reached is retried with backoff for `retry_seconds`, then the stage stops with a message
naming the endpoint; what was already stored stays. Credentials come only from the
environment (a Secret on a cluster) and never appear in reprs, errors or logs.

Stages read models and tables as local files, so `path(key)` downloads the object (or every
object under a prefix) into a local mirror at `root` and checks each one's size and ETag.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error, ServerError

from mmzero_runtime.spec import StorageSpec
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.store import AtomicWriter, check_key

log = logging.getLogger(__name__)

T = TypeVar("T")

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
"""Endpoint when the spec names none (the variable the AWS SDKs and CLI read too)."""

PART_SIZE = 16 << 20
"""Multipart part size: larger files go up in parts, retried part by part by the client."""

# S3 error codes that a later attempt can get past (server busy or starting); every other code
# (AccessDenied, NoSuchBucket, InvalidAccessKeyId, ...) is a configuration error, reported at once.
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "XMinioServerNotInitialized",
    "XMinioStorageFull",
}
_TRANSIENT_ERRORS = (urllib3.exceptions.HTTPError, ServerError, ConnectionError, TimeoutError)


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix without slashes)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise StoreError(f"storage uri {uri!r} is not of the form s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


class S3Store:
    """A run's artifacts under `s3://bucket/prefix`, mirrored on demand into `root`."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        root: str | Path,
        retry_seconds: float = 300,
    ) -> None:
        self.bucket, self.prefix = parse_uri(uri)
        self.uri, self.endpoint, self.retry_seconds = uri, endpoint, retry_seconds
        self.root = Path(root).resolve()
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if url.scheme not in ("http", "https") or not url.netloc:
            raise StoreError(
                f"S3 endpoint {endpoint!r} is not an http(s) URL like http://minio:9000"
            )
        # The client's own retries stay short: the backoff below decides how long to wait.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[]),
            maxsize=8,
        )
        self._client = Minio(
            url.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=url.scheme == "https",
            http_client=http,
        )

    @classmethod
    def from_environment(
        cls,
        uri: str,
        *,
        root: str | Path,
        endpoint: str | None = None,
        retry_seconds: float = 300,
        environ: Mapping[str, str] = os.environ,
    ) -> S3Store:
        """A store with credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in `environ`
        (the process environment, or the operator's view of a run's Secret)."""
        endpoint = endpoint or environ.get(ENDPOINT_ENV)
        access, secret = environ.get(ACCESS_KEY_ENV), environ.get(SECRET_KEY_ENV)
        if not endpoint:
            raise StoreError(
                f"storage uri {uri!r}: no S3 endpoint; set spec.storage.endpoint or {ENDPOINT_ENV}"
            )
        if not access or not secret:
            raise StoreError(
                f"storage uri {uri!r}: no S3 credentials; set {ACCESS_KEY_ENV} and "
                f"{SECRET_KEY_ENV} (on a cluster: the Secret in spec.storage.credentials_secret)"
            )
        return cls(
            uri,
            endpoint=endpoint,
            access_key=access,
            secret_key=secret,
            root=root,
            retry_seconds=retry_seconds,
        )

    @classmethod
    def for_run(
        cls,
        storage: StorageSpec,
        run: str,
        *,
        root: str | Path,
        retry_seconds: float | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> S3Store:
        """The store of run `run`: `<storage.uri>/<run>`, at the spec's endpoint."""
        return cls.from_environment(
            f"{storage.uri.rstrip('/')}/{run}",
            root=root,
            endpoint=storage.endpoint,
            retry_seconds=storage.retry_seconds if retry_seconds is None else retry_seconds,
            environ=environ,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r} at {self.endpoint})"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        """Run one store call, retrying transient failures with backoff until `retry_seconds`."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.5
        while True:
            try:
                return call()
            except S3Error as error:
                if error.code not in _TRANSIENT_CODES:
                    raise self._config_error(what, error) from None
                problem = f"{error.code}: {error.message}"
            except _TRANSIENT_ERRORS as error:
                problem = f"{type(error).__name__}: {error}"
            if time.monotonic() + delay > deadline:
                raise StoreError(
                    f"{self}: {what} failed for {self.retry_seconds:.0f} s (last error: "
                    f"{problem}); check that the store is up and reachable, then rerun the "
                    "stage: finished stages are kept"
                )
            log.warning(
                "store unavailable, retrying in %.1f s what=%s error=%s", delay, what, problem
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _config_error(self, what: str, error: S3Error) -> StoreError:
        hints = {
            "NoSuchBucket": f"create bucket {self.bucket!r} or fix spec.storage.uri",
            "AccessDenied": "give the credentials read/write access to the bucket",
            "InvalidAccessKeyId": f"check {ACCESS_KEY_ENV} (the credentials Secret)",
            "SignatureDoesNotMatch": f"check {SECRET_KEY_ENV} (the credentials Secret)",
        }
        hint = hints.get(str(error.code), "see the store's error code")
        return StoreError(f"{self}: {what}: {error.code} ({error.message}); {hint}")

    def _stat(self, key: str) -> tuple[int, str] | None:
        """(size, etag) of `key`, or None when no such object exists."""

        def call() -> tuple[int, str] | None:
            try:
                found = self._client.stat_object(self.bucket, self._name(key))
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            return int(found.size or 0), str(found.etag)

        return self._retry(f"stat {key!r}", call)

    def exists(self, key: str) -> bool:
        return self._stat(key) is not None

    def read_bytes(self, key: str) -> bytes:
        def call() -> bytes:
            response = self._client.get_object(self.bucket, self._name(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        if not self.exists(key):
            raise StoreError(
                f"{self}: no object {key!r}; the stage that writes it has not finished, "
                "or the store was changed by hand"
            )
        return self._retry(f"read {key!r}", call)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._retry(
            f"write {key!r}",
            lambda: self._client.put_object(
                self.bucket, self._name(key), io.BytesIO(data), len(data)
            ),
        )

    def upload_file(self, key: str, path: Path) -> None:
        if not path.is_file():
            raise StoreError(f"{self}: cannot store {key!r}: the source file {path} is missing")
        self._retry(
            f"upload {key!r}",
            lambda: self._client.fput_object(
                self.bucket, self._name(key), str(path), part_size=PART_SIZE
            ),
        )

    def download_file(self, key: str, path: Path) -> None:
        if not self.exists(key):
            raise StoreError(f"{self}: no object {key!r} to download")
        self._download(key, path)

    def _download(self, key: str, path: Path) -> None:
        """GET an object known to exist into `path`, atomically."""

        def call() -> None:
            response = self._client.get_object(self.bucket, self._name(key))
            try:
                with AtomicWriter(path) as handle:
                    for chunk in response.stream(1 << 20):
                        handle.write(chunk)
            finally:
                response.close()
                response.release_conn()

        self._retry(f"download {key!r}", call)

    def list(self, prefix: str) -> list[str]:
        return sorted(self._objects(prefix))

    def _objects(self, prefix: str) -> dict[str, tuple[int, str]]:
        """(size, ETag) of every object under `prefix` ("": the whole store), from one listing."""
        base = self._name(prefix) + "/" if prefix else self.prefix + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        return self._retry(
            f"list {prefix!r}",
            lambda: {
                str(o.object_name)[strip:]: (int(o.size or 0), str(o.etag))
                for o in self._client.list_objects(self.bucket, prefix=base, recursive=True)
            },
        )

    def delete_prefix(self, prefix: str) -> None:
        self._delete(prefix, self.list(prefix))
        shutil.rmtree(self.root / check_key(prefix), ignore_errors=True)  # and the mirror copy

    def delete_all(self) -> None:
        if not self.prefix:
            raise StoreError(f"{self}: refusing to empty a whole bucket; a run store has a prefix")
        stored = sorted(self._objects(""))
        self._delete("everything", stored)
        for top in {key.split("/")[0] for key in stored}:  # the mirror copies, nothing else there
            target = self.root / top
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
                (self.root / f".etag-{top}").unlink(missing_ok=True)

    def _delete(self, what: str, keys: Sequence[str]) -> None:
        names = [DeleteObject(self._name(key)) for key in keys]

        def call() -> None:
            failed = list(self._client.remove_objects(self.bucket, names))
            if failed:
                raise StoreError(f"{self}: could not delete {failed[0].name}: {failed[0].message}")

        self._retry(f"delete {what!r}", call)

    def path(self, key: str) -> Path:
        """Local copy of object `key`, or of every object under prefix `key`, in `root`."""
        target = self.root / check_key(key)
        found = self._stat(key)
        if found is not None:
            self._mirror(key, target, found)
            return target
        objects = self._objects(key)
        if not objects:
            raise StoreError(
                f"{self}: nothing stored under {key!r}; the stage that writes it has not "
                "finished, or the store was changed by hand"
            )
        for name, listed in sorted(objects.items()):
            self._mirror(name, self.root / name, listed)
        return target

    def _mirror(self, key: str, target: Path, found: tuple[int, str]) -> None:
        """Download `key` to `target` unless the copy there has the object's size and ETag."""
        size, etag = found
        marker = target.parent / f".etag-{target.name}"
        fresh = target.is_file() and target.stat().st_size == size and marker.is_file()
        if fresh and marker.read_text() == etag:
            return
        self._download(key, target)
        marker.write_text(etag)
