"""The stage graph: (RunSpec, finished stages) -> the stages that can run next.

Pure and deterministic, so the local executor and the operator mean the same thing by a run.
One iteration is Proposer GRPO -> propose -> Coder data -> Coder GRPO -> Solver data -> Solver
GRPO -> evaluate; each role starts from its own checkpoint of the previous iteration, and the
frozen helpers are chained as in reference §2.1 (with the Coder judged by the previous Solver
unless the spec selects the reference's `coder_checkpoint` defect, §13.11).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from mmzero_runtime.spec import PodResourcesSpec, RunSpec
from mmzero_runtime.stages import keys
from mmzero_runtime.stages.keys import Role
from mmzero_runtime.storage.manifest import manifest_key

StageKind = Literal[
    "proposer-grpo",
    "propose",
    "coder-data",
    "coder-grpo",
    "solver-data",
    "solver-grpo",
    "evaluate",
]
STAGE_KINDS: tuple[StageKind, ...] = get_args(StageKind)
SHARDED_KINDS: tuple[StageKind, ...] = ("propose", "coder-data", "solver-data")
"""Batch stages whose items are independent, so `resources.generation.replicas` pods each do a
block of them (`stages/shards.py`); evaluation runs as one pod."""
"""Every stage kind, in the order they run within an iteration."""

Component = Literal["trainer", "server", "generation", "render"]


@dataclass(frozen=True)
class PodGroup:
    """A set of identical pods a stage needs: its trainer or workers, or a frozen-role server."""

    component: Component
    role: Role | None
    """The role whose model the pods load, None for the render service."""
    models: tuple[str, ...]
    """Artifact keys of the checkpoints the pods load, one after another (none for render)."""
    gpus: int
    cpu: str
    memory: str
    replicas: int

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.replicas


@dataclass(frozen=True)
class Stage:
    """One node of the graph: what runs, what it reads, where it writes, what it needs."""

    name: str
    """Deterministic name, `i<iteration>-<kind>`, unique within a run."""
    kind: StageKind
    iteration: int
    role: Role | None
    """The role trained (GRPO stages) or whose model generates; None for evaluation."""
    inputs: tuple[tuple[str, str], ...]
    """(purpose, artifact key) pairs: checkpoints and data the stage reads."""
    output: str
    """Artifact prefix the stage writes; its manifest is `output/MANIFEST.json`."""
    depends_on: tuple[str, ...]
    """Names of the stages whose manifests must exist first."""
    pods: tuple[PodGroup, ...]
    """Pods the stage needs while it runs."""

    @property
    def manifest(self) -> str:
        return manifest_key(self.output)

    @property
    def gpus(self) -> int:
        return sum(group.total_gpus for group in self.pods)


def stage_name(iteration: int, kind: StageKind) -> str:
    """The stage's deterministic name."""
    return f"i{iteration}-{kind}"


def _pods(
    component: Component, role: Role | None, models: tuple[str, ...], resources: PodResourcesSpec
) -> PodGroup:
    return PodGroup(
        component, role, models, resources.gpus, resources.cpu, resources.memory, resources.replicas
    )


def _prev(kind: StageKind, iteration: int) -> tuple[str, ...]:
    """The previous iteration's stage of `kind`, or nothing in iteration 1 (base model)."""
    return () if iteration == 1 else (stage_name(iteration - 1, kind),)


def _data(iteration: int, kind: StageKind, file: str) -> str:
    return f"{keys.stage_prefix(iteration, kind)}/{file}"


def iteration_stages(spec: RunSpec, i: int) -> list[Stage]:
    """The seven stages of iteration `i`, in run order."""
    res = spec.resources
    ckpt = keys.checkpoint_key
    judge: Role = "solver" if spec.rewards.coder.judge == "previous_solver" else "coder"
    judge_stage: StageKind = "solver-grpo" if judge == "solver" else "coder-grpo"
    proposer_v, coder_prev, solver_prev = (
        ckpt("proposer", i),
        ckpt("coder", i - 1),
        ckpt("solver", i - 1),
    )
    render = _pods("render", None, (), res.render)

    def stage(
        kind: StageKind,
        role: Role | None,
        inputs: dict[str, str],
        deps: Iterable[str],
        *pods: PodGroup,
    ) -> Stage:
        return Stage(
            stage_name(i, kind),
            kind,
            i,
            role,
            tuple(inputs.items()),
            keys.stage_prefix(i, kind),
            tuple(sorted(set(deps))),
            pods,
        )

    return [
        stage(
            "proposer-grpo",
            "proposer",
            {"init": ckpt("proposer", i - 1), "coder": coder_prev, "solver": solver_prev},
            [*_prev("proposer-grpo", i), *_prev("coder-grpo", i), *_prev("solver-grpo", i)],
            _pods("trainer", "proposer", (ckpt("proposer", i - 1),), res.proposer_trainer),
            _pods("server", "coder", (coder_prev,), res.coder_server),
            _pods("server", "solver", (solver_prev,), res.solver_server),
            render,
        ),
        stage(
            "propose",
            "proposer",
            {"proposer": proposer_v},
            [stage_name(i, "proposer-grpo")],
            _pods("generation", "proposer", (proposer_v,), res.generation),
        ),
        stage(
            "coder-data",
            "coder",
            {"proposals": _data(i, "propose", keys.PROPOSALS_FOR_CODER), "coder": coder_prev},
            [stage_name(i, "propose"), *_prev("coder-grpo", i)],
            _pods("generation", "coder", (coder_prev,), res.generation),
            render,
        ),
        stage(
            "coder-grpo",
            "coder",
            {
                "init": coder_prev,
                "train_set": _data(i, "coder-data", keys.CODER_TRAIN_SET),
                "judge": ckpt(judge, i - 1),
            },
            [stage_name(i, "coder-data"), *_prev("coder-grpo", i), *_prev(judge_stage, i)],
            _pods("trainer", "coder", (coder_prev,), res.coder_trainer),
            _pods("server", judge, (ckpt(judge, i - 1),), res.judge_server),
            render,
        ),
        stage(
            "solver-data",
            "solver",
            {
                "proposals": _data(i, "propose", keys.PROPOSALS_FOR_SOLVER),
                "coder": ckpt("coder", i),
                "labeller": solver_prev,
            },
            [stage_name(i, "propose"), stage_name(i, "coder-grpo"), *_prev("solver-grpo", i)],
            # the same shards first draw with the new Coder, then label with the previous Solver
            _pods("generation", "solver", (ckpt("coder", i), solver_prev), res.generation),
            render,
        ),
        stage(
            "solver-grpo",
            "solver",
            {"init": solver_prev, "train_set": _data(i, "solver-data", keys.SOLVER_TRAIN_SET)},
            [stage_name(i, "solver-data"), *_prev("solver-grpo", i)],
            _pods("trainer", "solver", (solver_prev,), res.solver_trainer),
        ),
        stage(
            "evaluate",
            None,
            {"solver": ckpt("solver", i), "baseline": keys.BASE_MODEL},
            [stage_name(i, "solver-grpo")],
            # one pod: not in SHARDED_KINDS (it compares two models over one set of items)
            _pods(
                "generation",
                "solver",
                (ckpt("solver", i), keys.BASE_MODEL),
                res.generation.model_copy(update={"replicas": 1}),
            ),
        ),
    ]


def all_stages(spec: RunSpec) -> list[Stage]:
    """Every stage of the run, iteration by iteration, each after the stages it depends on."""
    return [s for i in range(1, spec.iterations + 1) for s in iteration_stages(spec, i)]


def plan(spec: RunSpec, done: Iterable[str]) -> list[Stage]:
    """The stages that can run now: not done, and every stage they depend on done.

    `done` holds the names of stages whose manifest exists. The result is ordered by iteration
    and run order, so executors that run one stage at a time take the first.
    """
    finished = set(done)
    return [
        s for s in all_stages(spec) if s.name not in finished and finished.issuperset(s.depends_on)
    ]


def is_finished(spec: RunSpec, done: Iterable[str]) -> bool:
    """True when every stage of the run is done."""
    finished = set(done)
    return all(s.name in finished for s in all_stages(spec))
