"""Stage manifests: the sha256 of every file a stage wrote, written last.

A stage is done exactly when its manifest exists, for the local executor and the operator
alike, so a killed stage never leaves half its outputs looking finished. The manifest also
gives each checkpoint a content digest, which generated items record to prove which model
made them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmzero_runtime.storage.errors import ManifestError, StoreError
from mmzero_runtime.storage.store import ArtifactStore, check_key

MANIFEST = "MANIFEST.json"
"""File name of a stage's manifest, written last under the stage's prefix."""

MANIFEST_VERSION = 1


def manifest_key(prefix: str) -> str:
    """Key of the manifest that marks the stage under `prefix` done."""
    return f"{prefix.rstrip('/')}/{MANIFEST}"


@dataclass(frozen=True)
class FileEntry:
    """One output file: its sha256 and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """What a finished stage wrote, keyed by path relative to the stage's prefix."""

    stage: str
    files: dict[str, FileEntry]
    meta: dict[str, Any] = field(default_factory=dict)

    def digest(self, under: str = "") -> str:
        """Content digest of the files under `under` (all files when empty), e.g. a checkpoint."""
        prefix = f"{under.rstrip('/')}/" if under else ""
        lines = sorted(
            f"{name} {entry.sha256}"
            for name, entry in self.files.items()
            if name.startswith(prefix)
        )
        if not lines:
            raise ManifestError(f"stage {self.stage}: no files under {under!r} to digest")
        return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def to_json(self) -> bytes:
        body = {
            "version": MANIFEST_VERSION,
            "stage": self.stage,
            "files": {
                k: {"sha256": v.sha256, "size": v.size} for k, v in sorted(self.files.items())
            },
            "meta": self.meta,
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, source: str) -> Manifest:
        problem: str | None
        try:
            body = json.loads(data)
        except ValueError as error:
            problem = str(error)
        except RecursionError:
            problem = "nested too deeply to read"
        else:
            problem = _shape_problem(body)
        if problem is not None:
            raise ManifestError(
                f"{source}: unreadable manifest ({problem}); delete it to rerun the stage"
            )
        files = {k: FileEntry(v["sha256"], v["size"]) for k, v in body["files"].items()}
        return cls(stage=body["stage"], files=files, meta=body.get("meta", {}))


def _shape_problem(body: Any) -> str | None:
    """What is wrong with a decoded manifest's shape, or None: every field is read as written,
    so nothing downstream meets a list where it expects a mapping."""
    if not isinstance(body, dict):
        return f"expected a mapping, got {type(body).__name__}"
    files = body.get("files")
    if not isinstance(files, dict):
        return f"files: expected a mapping of file names, got {type(files).__name__}"
    for name, entry in files.items():
        shown = name if name.isprintable() else repr(name)
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and type(entry.get("size")) is int
        ):
            return f"files.{shown}: expected {{sha256: text, size: integer}}"
        try:
            check_key(name)  # never a name that reads outside the stage's prefix
        except StoreError as error:
            return f"files: {error}"
    if not isinstance(body.get("stage"), str):
        return "stage: expected text"
    if not isinstance(body.get("meta", {}), dict):
        return f"meta: expected a mapping, got {type(body['meta']).__name__}"
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(directory: Path, under: str = "") -> str:
    """Content digest of the files under `directory`, as `Manifest.digest(under)` gives it once
    they are stored as `under/<relative path>`: for a checkpoint outside a store
    (`mmzero serve MODEL_DIR`, `mmzero import`)."""
    prefix = f"{under.rstrip('/')}/" if under else ""
    files = {
        f"{prefix}{path.relative_to(directory).as_posix()}": FileEntry(
            sha256_file(path), path.stat().st_size
        )
        for path in directory.rglob("*")
        if path.is_file()
    }
    return Manifest(str(directory), files).digest(under)


class StageOutput:
    """Collects a stage's outputs under its prefix; `commit` writes the manifest last."""

    def __init__(self, store: ArtifactStore, prefix: str, stage: str) -> None:
        self.store, self.prefix, self.stage = store, prefix.rstrip("/"), stage
        self.files: dict[str, FileEntry] = {}

    def _key(self, name: str) -> str:
        if name == MANIFEST:
            raise StoreError(f"stage {self.stage}: {MANIFEST} is written by commit(), not by hand")
        return f"{self.prefix}/{name}"

    def put_bytes(self, name: str, data: bytes) -> None:
        """Store one output file from memory."""
        self.store.write_bytes(self._key(name), data)
        self.files[name] = FileEntry(hashlib.sha256(data).hexdigest(), len(data))

    def put_file(self, name: str, path: Path) -> None:
        """Store one output file from disk."""
        self.store.upload_file(self._key(name), path)
        self.files[name] = FileEntry(sha256_file(path), path.stat().st_size)

    def put_tree(self, name: str, directory: Path) -> None:
        """Store every file under `directory` as `name/<relative path>`."""
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.put_file(f"{name}/{path.relative_to(directory).as_posix()}", path)

    def commit(self, meta: dict[str, Any] | None = None) -> Manifest:
        """Write the manifest: from now on the stage is done."""
        manifest = Manifest(self.stage, dict(self.files), meta or {})
        self.store.write_bytes(manifest_key(self.prefix), manifest.to_json())
        return manifest


def read_manifest(store: ArtifactStore, prefix: str) -> Manifest | None:
    """The manifest of the stage under `prefix`, or None when the stage is not done."""
    key = manifest_key(prefix)
    if not store.exists(key):
        return None
    return Manifest.from_json(store.read_bytes(key), key)


def verify(store: ArtifactStore, prefix: str) -> Manifest:
    """Check every file of a finished stage against its manifest; raise naming each mismatch."""
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise ManifestError(f"{prefix}: no manifest, the stage has not finished")
    problems = []
    for name, entry in sorted(manifest.files.items()):
        key = f"{prefix}/{name}"
        try:
            actual = sha256_file(store.path(key))  # for S3: the downloaded copy stages will read
        except (StoreError, FileNotFoundError):
            problems.append(f"{key}: missing")
            continue
        except OSError as error:  # a directory, a file without read permission
            problems.append(f"{key}: not a readable file ({error.strerror})")
            continue
        if actual != entry.sha256:
            problems.append(
                f"{key}: sha256 {actual[:12]}… differs from the manifest's {entry.sha256[:12]}…"
            )
    if problems:
        raise ManifestError(
            f"stage {manifest.stage} under {prefix} is corrupt: "
            + "; ".join(problems)
            + ". Delete its manifest to rerun the stage."
        )
    return manifest
