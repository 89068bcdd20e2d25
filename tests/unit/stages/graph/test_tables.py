"""The schema of every stored table (stages/graph/tables.py): rows as the stages write them
pass, a row with a wrong or missing field fails naming the table, line and field, and
docs/records.md names every field."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmzero_runtime.roles import Proposal
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.tables import (
    TABLES,
    ProposalFields,
    Row,
    load_table,
    read_table,
    schema,
    table_bytes,
)
from mmzero_runtime.storage.errors import RecordError
from mmzero_runtime.storage.records import dumps_jsonl
from mmzero_runtime.storage.store import LocalStore

ROOT = Path(__file__).resolve().parents[4]
NAMES = sorted(TABLES)
FIXED = {"kind", "model", "question_kind", "judge_verdict"}
"""Fields whose values are a `Literal`: kept as the example has them when rows are varied."""


def test_tables_every_table_key_constant_has_a_schema() -> None:
    names = {v for k, v in vars(keys).items() if k.isupper() and str(v).endswith(".jsonl")}
    assert names == set(TABLES)


def test_proposal_fields_are_the_parsed_proposal_fields() -> None:
    assert set(ProposalFields.model_fields) == {f.name for f in dataclasses.fields(Proposal)}


def test_proposal_row_from_the_propose_writer_parses(table_row: Any) -> None:
    assert table_row(keys.PROPOSALS_FOR_CODER)["proposal"] is not None


@pytest.mark.parametrize("name", NAMES)
def test_table_row_as_written_reads_back_unchanged(
    tmp_path: Path, table_row: Any, name: str
) -> None:
    rows = [table_row(name), table_row(name)]
    store = LocalStore(tmp_path)
    store.write_bytes(f"i1/stage/{name}", table_bytes(name, rows))
    assert read_table(store, f"i1/stage/{name}") == rows


@pytest.mark.parametrize(
    ("name", "field", "value", "fault"),
    [
        # a number written as a string is refused, not coerced
        (keys.CANDIDATES, "hard_consistency", "0.5", "valid number"),
        # a flag written as a number
        (keys.PROBES, "label_correct", 1, "valid boolean"),
        # a nested field: the proposal's answer
        (
            keys.CODER_TRAIN_SET,
            "proposal",
            {**dataclasses.asdict(Proposal("c", "e", 3, "h", "a"))},
            "proposal.easy_answer",
        ),
        # a step figure that is not a number
        (keys.STEPS, "reward/mean", "high", "field reward/mean"),
        # a verdict the judge never gives
        (keys.PREDICTIONS, "judge_verdict", "maybe", "judge_verdict"),
    ],
    ids=["string-number", "number-flag", "nested", "step-figure", "literal"],
)
def test_table_row_with_a_wrong_field_fails_naming_table_line_and_field(
    table_row: Any, name: str, field: str, value: Any, fault: str
) -> None:
    data = dumps_jsonl([table_row(name), table_row(name, **{field: value})])
    with pytest.raises(RecordError) as error:
        load_table(data, f"i1/stage/{name}")
    message = str(error.value)
    assert message.startswith(f"i1/stage/{name} line 2: not a {schema(name).__name__} (field ")
    assert field.split("/")[0] in message and fault in message
    assert "delete the stage's outputs" in message


@pytest.mark.parametrize("name", NAMES)
def test_table_row_without_a_required_field_fails_naming_it(table_row: Any, name: str) -> None:
    row = table_row(name)
    required = sorted(f for f, info in schema(name).model_fields.items() if info.is_required())
    del row[required[0]]
    with pytest.raises(RecordError, match=rf"line 1: .*field {required[0]}: field required"):
        load_table(dumps_jsonl([row]), name)


def test_table_row_with_an_unknown_field_fails() -> None:
    row = {"id": "a", "render": "ok", "rendr": "ok"}
    with pytest.raises(RecordError, match="field rendr: extra inputs are not permitted"):
        load_table(dumps_jsonl([row]), keys.DRAWS)


def test_table_writer_refuses_a_row_its_readers_would_refuse() -> None:
    with pytest.raises(RecordError, match=r"draws.jsonl row 1 'a': .*field render.*a bug"):
        table_bytes(keys.DRAWS, [{"id": "a", "render": None}])


def test_table_without_a_schema_is_named() -> None:
    with pytest.raises(RecordError, match=r"no table named 'other\.jsonl' has a schema"):
        load_table(b"", "i1/stage/other.jsonl")


def _varied(field: str, value: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON shape as `value` (an example row's field)."""
    if field in FIXED or value is None:
        return st.just(value)
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int | float):
        return st.floats(allow_nan=False) if isinstance(value, float) else st.integers()
    if isinstance(value, str):
        return st.text()
    if isinstance(value, list):
        return st.lists(st.one_of(*(_varied(field, v) for v in value)), max_size=4)
    return st.fixed_dictionaries({k: _varied(k, v) for k, v in value.items()})


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # `table_row` is pure
@given(st.data())
def test_table_round_trip_of_varied_rows_is_identity(table_row: Any, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(NAMES))
    rows = data.draw(st.lists(_varied("", table_row(name)), max_size=3))
    assert load_table(table_bytes(name, rows), name) == rows


def _paragraph(text: str, name: str) -> str:
    found = [p for p in text.split("\n\n") if re.search(rf"`[^`\n]*\b{re.escape(name)}`", p)]
    assert found, f"docs/records.md has no paragraph naming `{name}`"
    return found[-1]


@pytest.mark.parametrize("name", NAMES)
def test_records_doc_names_every_field_of_the_table(name: str) -> None:
    rows = (ROOT / "docs" / "records.md").read_text().split("## Rows", 1)[1]
    paragraph = _paragraph(rows, name)
    model: type[Row] = schema(name)
    fields = set(model.model_fields)
    if "proposal" in fields:
        fields |= set(ProposalFields.model_fields)
    missing = sorted(f for f in fields if f"`{f}`" not in paragraph)
    assert not missing, f"docs/records.md, {name}: fields {missing} of {model.__name__} missing"
