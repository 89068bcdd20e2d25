"""Names and labels of everything a run owns: one template per kind of child, one labelling
function, and the longest run name, derived from the longest child name.

Names are deterministic (`<run>-spec`, `<run>-<stage>[-a<N>]`, `<run>-i<N><pg|cg>-<role>`), so a
restarted operator finds what it made instead of making it again; never a random suffix.
"""

from __future__ import annotations

from annotated_types import Le
from pydantic import BaseModel

from mmzero_runtime.spec import API_GROUP, ClusterSpec, RunSpec
from mmzero_runtime.stages.graph.plan import STAGE_KINDS, Stage, stage_name

# Label keys: the run, and where in the stage graph a child belongs.
LABEL_RUN = "mmzero.dev/run"
LABEL_ITERATION = "mmzero.dev/iteration"
LABEL_STAGE = "mmzero.dev/stage"
"""The stage's kind (`proposer-grpo`), not its name: a bounded value."""
LABEL_ATTEMPT = "mmzero.dev/attempt"
LABEL_SERVER = "mmzero.dev/server"
"""The frozen-role server a Deployment's pods belong to (their Service selects by it)."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "mmzero-operator", "app.kubernetes.io/name": "mmzero"}
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""Kueue's: the queue that admits a stage Job."""
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the Job controller on the Job's pods."""
FINALIZER = f"{API_GROUP}/operator"
"""Holds a run with `cluster.delete_artifacts` until its artifacts are deleted."""

NAME_LIMIT = 63
"""The longest label value and DNS label: a Job's name is both (its pods carry it as a label)."""
_KIND_SHORT = {"proposer-grpo": "pg", "coder-grpo": "cg"}


def spec_config_name(run: str) -> str:
    return f"{run}-spec"


def job_name(run: str, stage: Stage, attempt: int) -> str:
    """`<run>-<stage>` for the first attempt, `<run>-<stage>-a<N>` after."""
    return _job_name(run, stage.name, attempt)


def _job_name(run: str, stage: str, attempt: int) -> str:
    base = f"{run}-{stage}"
    return base if attempt == 1 else f"{base}-a{attempt}"


def server_name(run: str, stage: Stage, role: str) -> str:
    """`<run>-i<N><pg|cg>-<role>`: shorter than the longest Job name."""
    return f"{run}-i{stage.iteration}{_KIND_SHORT.get(stage.kind, 'x')}-{role}"


def rendezvous_name(job: str) -> str:
    """The headless Service by which a multi-node trainer's pods find index 0: the Job's name
    (with an `r` first for a run name that begins with a digit, since a Service's must not)."""
    return job if job[0].isalpha() else f"r{job}"


def _most(model: type[BaseModel], field: str) -> int:
    """The upper bound the spec puts on an integer field."""
    (bound,) = (m.le for m in model.model_fields[field].metadata if isinstance(m, Le))
    assert isinstance(bound, int), f"{model.__name__}.{field}: no integer upper bound"
    return bound


_LONGEST_STAGE = max((stage_name(_most(RunSpec, "iterations"), k) for k in STAGE_KINDS), key=len)
MAX_RUN_NAME = NAME_LIMIT - len(_job_name("", _LONGEST_STAGE, _most(ClusterSpec, "stage_attempts")))
"""The longest run name: the last attempt of the longest stage of the last iteration still
fits `NAME_LIMIT` (the CRD refuses longer run names, and so does the run file's schema)."""


def labels(
    run: str, stage: Stage | None = None, *, attempt: int | None = None, server: str | None = None
) -> dict[str, str]:
    """The labels of a child of `run` and of its pod template: who manages it, the run, and
    the stage's iteration and kind with its attempt (a Job) or server (a frozen role)."""
    found = {**MANAGED_BY, LABEL_RUN: run}
    if stage is not None:
        found |= {LABEL_ITERATION: str(stage.iteration), LABEL_STAGE: stage.kind}
    if attempt is not None:
        found[LABEL_ATTEMPT] = str(attempt)
    if server is not None:
        found[LABEL_SERVER] = server
    return found


def selector(run: str) -> str:
    """The label selector of everything this operator made for `run`."""
    return ",".join(f"{key}={value}" for key, value in labels(run).items())
