"""The artifact store interface and its local-directory backend.

Stages exchange data and checkpoints only through a store (a local directory here, S3/MinIO on
a cluster), never through node-local paths. Keys are "/"-separated paths relative to the run's
root. Every write is atomic: a reader sees either nothing or the whole object, never a part.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from mmzero_runtime.storage.errors import StoreError


class ArtifactStore(Protocol):
    """What a stage needs from a store; every backend implements exactly this."""

    root: Path
    """Local directory where `path` puts the store's files: the store itself for a local
    directory, a verified download mirror for S3. Scratch space and metrics live here too."""

    def path(self, key: str) -> Path:
        """A local file (or directory, for a prefix) holding `key`, for readers that need one
        (model loading, tables); an S3 store downloads it first."""
        ...

    def exists(self, key: str) -> bool:
        """True when an object is stored under `key`."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; StoreError when it is missing."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically, replacing what was there."""
        ...

    def upload_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key` atomically."""
        ...

    def download_file(self, key: str, path: Path) -> None:
        """Copy the object to `path` (written atomically)."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (a directory-like prefix, without trailing slash), sorted."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under `prefix`."""
        ...

    def delete_all(self) -> None:
        """Remove every object of this store (the whole run) and their local copies."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root or that are not plain relative paths."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"artifact key {key!r} is not a plain relative path like 'i1/propose/x'")
    return key


class LocalStore:
    """A store in a local directory; atomic by writing a temporary file and renaming it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"{self}: no object {key!r}; the stage that writes it has not "
                "finished, or the store was changed by hand"
            ) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        with self._atomic(target) as handle:
            handle.write(data)

    def upload_file(self, key: str, path: Path) -> None:
        target = self.path(key)
        if not path.is_file():
            raise StoreError(f"{self}: cannot store {key!r}: the source file {path} is missing")
        if path.resolve() == target:
            return  # already in place (a file written under the store's root)
        with self._atomic(target) as handle, open(path, "rb") as source:
            shutil.copyfileobj(source, handle, length=1 << 20)

    def download_file(self, key: str, path: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise StoreError(f"{self}: no object {key!r} to download")
        with self._atomic(path) as handle, open(source, "rb") as data:
            shutil.copyfileobj(data, handle, length=1 << 20)

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if not Path(k).name.startswith(".tmp-"))

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def delete_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _atomic(target: Path) -> AtomicWriter:
        return AtomicWriter(target)


class AtomicWriter:
    """Context manager: a temp file beside `target`, fsynced and renamed into place on success."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> BinaryIO:
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".tmp-", dir=self.target.parent)
        except OSError as error:
            raise _disk_error(self.target, error) from error
        self.tmp = Path(name)
        self.handle: BinaryIO = os.fdopen(fd, "wb")
        return self.handle

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if exc_type is None:
                os.replace(self.tmp, self.target)
        except OSError as error:
            self.tmp.unlink(missing_ok=True)
            raise _disk_error(self.target, error) from error
        finally:
            if exc_type is not None:
                self.tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _disk_error(self.target, exc) from exc


def _disk_error(target: Path, error: OSError) -> StoreError:
    if error.errno == errno.ENOSPC:
        return StoreError(
            f"disk full while writing {target}; free space or point "
            "spec.storage.uri elsewhere, then rerun: finished stages are kept"
        )
    return StoreError(f"cannot write {target}: {error.strerror or error}")
