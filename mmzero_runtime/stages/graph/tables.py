"""The schema of every JSON Lines table the stages store, and the one way to read and write them.

A table's rows are checked against its model when a stage writes them and whenever anything
reads them, so a row from another version or edited by hand fails with the table, line and
field instead of a `KeyError` deep in a reader. Rows stay plain dicts (as read), so valid data
reads exactly as before. The tables and their fields are documented in docs/records.md (a test
keeps them in step); the schemas sit beside the key layout they name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mmzero_runtime.stages.graph import keys
from mmzero_runtime.storage.errors import RecordError
from mmzero_runtime.storage.records import dumps_table, parse_table
from mmzero_runtime.storage.store import ArtifactStore


class Row(BaseModel):
    """A table row: exactly these fields (a misspelt one is a fault, not ignored)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ProposalFields(Row):
    """A parsed proposal, as `roles.Proposal` (a test keeps the two field lists equal)."""

    content_type: str
    caption: str
    easy_question: str
    easy_answer: str
    hard_question: str
    hard_answer: str


class ProposalRow(Row):
    """`proposals-coder.jsonl`, `proposals-solver.jsonl`: one sampled proposal."""

    id: str
    topic: str
    producer: str
    response: str
    proposal: ProposalFields | None
    parse_failure: str | None


class CoderTrainRow(Row):
    """`coder-train.jsonl`: a proposal the Coder-data filter kept."""

    id: str
    producer: str
    proposal: ProposalFields


class RenderRow(Row):
    """`renders.jsonl`: the Coder-data stage's drawings of one proposal."""

    id: str
    reasons: list[str]
    dropped: str | None


class DrawRow(Row):
    """`draws.jsonl`: the Solver-data stage's one drawing of a proposal."""

    id: str
    render: str


class Votes(Row):
    """The previous Solver's votes on an item and the label they give."""

    id: str
    question: str
    label: str | None
    hard_consistency: float
    vote_margin: float
    easy_score: float | None
    hard_answers: list[str | None]
    easy_answers: list[str | None]
    dropped: str | None
    labelled_by: str


class SolverItemRow(Votes):
    """`candidates.jsonl`, `solver-train.jsonl`: a drawn and labelled item."""

    image: str
    proposal: ProposalFields
    drawn_by: str


class ProbeRow(Votes):
    """`probes.jsonl`: a known-answer probe, labelled like a generated item."""

    chart: str
    skill: str
    truth: str
    label_correct: bool


class RewardRow(Row):
    """`rewards.jsonl`: one sampled response of a GRPO step; the role-specific fields are
    absent from the other roles' rows."""

    step: int
    id: str
    group: str
    reward: float | None
    terms: dict[str, float | bool | None]
    response: str
    topic: str | None = None
    """Proposer."""
    proposal: ProposalFields | None = None
    """Proposer."""
    parse_failure: str | None = None
    """Proposer."""
    render: str | None = None
    """Coder."""
    item: str | None = None
    """Solver."""
    label: str | None = None
    """Solver."""


class StepRow(Row):
    """`steps.jsonl`: one GRPO step's figures (every other field, a number), or step 0
    saying why the stage trained nothing."""

    model_config = ConfigDict(extra="allow", strict=True)
    __pydantic_extra__: dict[str, float]

    kind: Literal["step"]
    step: int
    skipped: str | None = None


class Answer(Row):
    """One evaluated model's graded answer to one question."""

    id: str
    model: Literal["solver", "baseline"]
    producer: str
    item: str
    question: str
    truth: str
    response: str
    answer: str | None
    formatted: bool
    failure: str | None
    outcome: str


class ResultRow(Answer):
    """`results.jsonl`: an answer to a held-out known-answer question."""

    question_kind: Literal["easy", "hard"]
    skill: str


class PredictionRow(Answer):
    """`benchmarks/<name>/predictions.jsonl`: an answer to a benchmark question; the judge's
    fields only with `evaluation.judge`."""

    benchmark: str
    choices: list[str]
    image_sha256: str
    grader_outcome: str | None = None
    judge_verdict: Literal["yes", "no", "unclear", "failed"] | None = None


TABLES: dict[str, type[Row]] = {
    keys.PROPOSALS_FOR_CODER: ProposalRow,
    keys.PROPOSALS_FOR_SOLVER: ProposalRow,
    keys.CODER_TRAIN_SET: CoderTrainRow,
    keys.RENDERS: RenderRow,
    keys.DRAWS: DrawRow,
    keys.CANDIDATES: SolverItemRow,
    keys.SOLVER_TRAIN_SET: SolverItemRow,
    keys.PROBES: ProbeRow,
    keys.REWARDS: RewardRow,
    keys.STEPS: StepRow,
    keys.EVAL_RESULTS: ResultRow,
    keys.PREDICTIONS: PredictionRow,
}
"""Schema of each stored table, by its file name (the last part of its key)."""


def schema(key: str) -> type[Row]:
    """The schema of the table at `key` (a store key, a path, or a file name)."""
    name = PurePosixPath(key).name
    try:
        return TABLES[name]
    except KeyError:
        raise RecordError(
            f"{key}: no table named {name!r} has a schema; add it to TABLES in {__name__}"
        ) from None


def load_table(data: bytes, key: str) -> list[dict[str, Any]]:
    """The rows of the table at `key` from its bytes, each checked against its schema."""
    return parse_table(data, key, schema(key))


def read_table(store: ArtifactStore, key: str) -> list[dict[str, Any]]:
    """The rows of the table at `key` in `store`, each checked against its schema."""
    return load_table(store.read_bytes(key), key)


def table_bytes(key: str, rows: Iterable[dict[str, Any]]) -> bytes:
    """The stored bytes of a table's rows, each checked against its schema first."""
    return dumps_table(rows, key, schema(key))
