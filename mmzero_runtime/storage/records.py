"""Records that stages exchange, as JSON Lines: one object per line, schema in docs/records.md.

JSON Lines keeps records readable with any tool and appendable; each record carries its own id
and the digest of the checkpoint that produced it, so joins are by id and provenance is checked.
A table with a schema (a pydantic model) is checked row by row when written and when read, so a
row that a reader would misread fails where it is, naming the table, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from mmzero_runtime.storage.errors import RecordError, StoreError

SHOWN_FIELD_ERRORS = 3
"""Faults of one row named in a schema error; the rest are counted."""


def dumps_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """Encode rows as JSON Lines, keys sorted so equal records give equal bytes."""
    return b"".join(
        json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n" for row in rows
    )


def _numbered(data: bytes, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
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
        yield number, row


def parse_jsonl(data: bytes, source: str) -> Iterator[dict[str, Any]]:
    """Decode JSON Lines; a bad line is an error naming the file and line."""
    for _, row in _numbered(data, source):
        yield row


def schema_faults(schema: type[BaseModel], row: dict[str, Any]) -> str | None:
    """What is wrong with `row` under `schema` (`field: problem; ...`), or None when it fits.

    Strict: a number written as a string, or a flag as a number, is a fault, not coerced.
    """
    try:
        schema.model_validate(row, strict=True)
    except ValidationError as error:
        faults = [
            f"field {'.'.join(map(str, e['loc'])) or '(row)'}: {e['msg'].lower()}"
            + ("" if e["type"] == "missing" else f" (got {e['input']!r:.60})")
            for e in error.errors()
        ]
        more = len(faults) - SHOWN_FIELD_ERRORS
        return "; ".join(faults[:SHOWN_FIELD_ERRORS]) + (f"; {more} more" if more > 0 else "")
    return None


def parse_table(data: bytes, source: str, schema: type[BaseModel]) -> list[dict[str, Any]]:
    """Decode a table's JSON Lines, each row checked against `schema`; rows come back as read."""
    rows = []
    for number, row in _numbered(data, source):
        faults = schema_faults(schema, row)
        if faults is not None:
            raise RecordError(
                f"{source} line {number}: not a {schema.__name__} ({faults}); the table was "
                "written by another version of mmzero or edited by hand: delete the stage's "
                "outputs (its prefix, with its MANIFEST.json) and run it again"
            )
        rows.append(row)
    return rows


def dumps_table(rows: Iterable[dict[str, Any]], name: str, schema: type[BaseModel]) -> bytes:
    """Encode a table's rows, each checked against `schema` first, so that no stage writes a row
    its readers would refuse."""
    materialised = list(rows)
    for number, row in enumerate(materialised, start=1):
        faults = schema_faults(schema, row)
        if faults is not None:
            raise RecordError(
                f"{name} row {number} {row.get('id', '')!r}: not a {schema.__name__} ({faults}); "
                "the stage built a row its table's schema refuses: a bug, report it"
            )
    return dumps_jsonl(materialised)
