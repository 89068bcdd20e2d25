"""Records that stages exchange, as JSON Lines: one object per line, schema in docs/records.md.

JSON Lines keeps records readable with any tool and appendable; each record carries its own id
and the digest of the checkpoint that produced it, so joins are by id and provenance is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.store import ArtifactStore


def dumps_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """Encode rows as JSON Lines, keys sorted so equal records give equal bytes."""
    return b"".join(
        json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n" for row in rows
    )


def parse_jsonl(data: bytes, source: str) -> Iterator[dict[str, Any]]:
    """Decode JSON Lines; a bad line is an error naming the file and line."""
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise StoreError(f"{source} line {number}: not JSON ({error})") from None
        except RecursionError:
            raise StoreError(
                f"{source} line {number}: nested too deeply to read; look for brackets left open"
            ) from None
        if not isinstance(row, dict):
            raise StoreError(
                f"{source} line {number}: expected an object, got {type(row).__name__}"
            )
        yield row


def write_records(output: StageOutput, name: str, rows: Iterable[dict[str, Any]]) -> int:
    """Store rows as the stage output file `name`; returns how many were written."""
    materialised = list(rows)
    output.put_bytes(name, dumps_jsonl(materialised))
    return len(materialised)


def read_records(store: ArtifactStore, key: str) -> list[dict[str, Any]]:
    """All rows of the JSON Lines object at `key`."""
    return list(parse_jsonl(store.read_bytes(key), key))
