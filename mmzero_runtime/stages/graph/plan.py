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
from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.graph.keys import Role
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
"""Every stage kind, in the order they run within an iteration."""
SHARDED_KINDS: tuple[StageKind, ...] = ("propose", "coder-data", "solver-data")
"""Batch stages whose items are independent, so `resources.generation.replicas` pods each do a
block of them (`stages/process/shards.py`); evaluation runs as one pod."""

Component = Literal["trainer", "server", "generation"]


@dataclass(frozen=True)
class PodGroup:
    """A set of identical pods a stage needs: its trainer or workers, or a frozen-role server."""

    component: Component
    role: Role
    """The role whose model the pods load."""
    models: tuple[str, ...]
    """Artifact keys of the checkpoints the pods load, one after another."""
    gpus: int
    """GPUs per pod."""
    cpu: str
    memory: str
    replicas: int
    """Pods: nodes of a trainer, shards of a batch stage, servers of a frozen role."""

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.replicas


@dataclass(frozen=True)
class Server(PodGroup):
    """Frozen-role servers a stage asks while it runs (`mmzero serve` on a checkpoint)."""

    purpose: str
    """The stage input they serve, which names the stage's variable for their URL
    (`launch.server_env`): `coder`, `solver`, or `judge`."""


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
    main: PodGroup
    """The pods that run `mmzero stage`: its trainer, or its generation workers."""
    shards: int
    """Blocks a batch stage's items split into, one `main` pod each (`stages/process/shards.py`); 1
    for a stage that runs whole."""
    nodes: int
    """Nodes a trainer spans, one `main` pod each, started and failed as one gang; 1 else."""
    servers: tuple[Server, ...]
    """Frozen-role servers the stage asks while it runs."""

    @property
    def pods(self) -> tuple[PodGroup, ...]:
        """Every pod group the stage needs while it runs."""
        return (self.main, *self.servers)

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
    component: Component, role: Role, models: tuple[str, ...], resources: PodResourcesSpec
) -> PodGroup:
    r = resources
    return PodGroup(component, role, models, r.gpus, r.cpu, r.memory, r.replicas)


def _server(role: Role, model: str, resources: PodResourcesSpec, purpose: str) -> Server:
    r = resources
    return Server("server", role, (model,), r.gpus, r.cpu, r.memory, r.replicas, purpose)


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

    def stage(
        kind: StageKind,
        role: Role | None,
        inputs: dict[str, str],
        deps: Iterable[str],
        main: PodGroup,
        *servers: Server,
    ) -> Stage:
        return Stage(
            stage_name(i, kind),
            kind,
            i,
            role,
            tuple(inputs.items()),
            keys.stage_prefix(i, kind),
            tuple(sorted(set(deps))),
            main,
            shards=main.replicas if kind in SHARDED_KINDS else 1,
            nodes=main.replicas if main.component == "trainer" else 1,
            servers=servers,
        )

    return [
        stage(
            "proposer-grpo",
            "proposer",
            {"init": ckpt("proposer", i - 1), "coder": coder_prev, "solver": solver_prev},
            [*_prev("proposer-grpo", i), *_prev("coder-grpo", i), *_prev("solver-grpo", i)],
            _pods("trainer", "proposer", (ckpt("proposer", i - 1),), res.proposer_trainer),
            _server("coder", coder_prev, res.coder_server, "coder"),
            _server("solver", solver_prev, res.solver_server, "solver"),
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
            _server(judge, ckpt(judge, i - 1), res.judge_server, "judge"),
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
