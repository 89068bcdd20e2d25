"""What one iteration of `examples/run.yaml` teaches the tiny model, over several seeds.

For each seed, runs the example (seed replaced, everything else as `make run` runs it) and then
probes, at T 1.0 on held-out prompts, the warm-started base model and each role's checkpoint
after the iteration: the Proposer's parse rate (all six tags), the Coder's render rate on
held-out procedural proposals, and the Solver's accuracy on held-out known-answer charts (easy
and hard question of each). Shares are pooled over seeds with a Wilson 95% interval; the
per-seed shares follow. Runs are resumable (an interrupted benchmark continues).

With `--coder-steps N` it is the Coder learnability check instead: each seed runs only as far
as Coder GRPO, with N Coder steps, and only the render rate is probed; the table adds the render
rate the Coder's own rollouts had in its first and last quarter of steps.

With `--solver-steps N` it is the self-evolution check: each seed runs as far as Solver GRPO,
with N Solver steps on the majority-vote labels of the warm-started Solver, and only the
Solver is probed; the table adds the accuracy of those labels on the run's known-answer probes
(`probes.jsonl` of the Solver-data stage).

Usage: `uv run python benchmarks/learning.py [--seeds 1 2 3] [--prompts 64] [--out DIR]
[--coder-steps N | --solver-steps N]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from mmzero_runtime.models.loading import load_vlm
from mmzero_runtime.models.procedural import HELD_OUT_OFFSET, generate_items
from mmzero_runtime.render import Renderer
from mmzero_runtime.roles import Proposal
from mmzero_runtime.spec import load_run
from mmzero_runtime.stages.kinds.evaluate import wilson
from mmzero_runtime.warmstart.measure import Share, probe_coder, probe_proposer, probe_solver

ROOT = Path(__file__).resolve().parents[1]
PROBE_SEED = 424242
"""Seed of the held-out prompts and of the probes' sampling: the same for every checkpoint."""


def _run(seed: int, out: Path, learning_rate: float | None, only: tuple[str, int] | None) -> Path:
    """Run the example with `seed` into `out/seed-<seed>` (resumes a finished or partial run);
    with `only` = (role, steps), only as far as that role's GRPO, trained for that many steps."""
    document = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())
    document["spec"]["seed"] = seed
    if learning_rate is not None:
        for role in document["spec"]["roles"].values():
            role["learning_rate"] = learning_rate
    until = []
    if only is not None:
        role, steps = only
        document["spec"]["roles"][role]["steps"] = steps
        until = ["--until", f"{role}-grpo"]
    document["metadata"]["name"] = f"learning-s{seed}"
    directory = out / f"seed-{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    spec_file = out / f"seed-{seed}.yaml"
    spec_file.write_text(yaml.safe_dump(document, sort_keys=False))
    command = [sys.executable, "-m", "mmzero_runtime.cli", "run", str(spec_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [*command, *until, "--device", "cpu", "--run-dir", str(directory)], env=env, check=True
    )
    return directory


def _probe(role: str, model_dir: Path, prompts: int, renderer: Renderer, run_file: Path) -> Share:
    image = load_run(run_file).spec.image
    loaded = load_vlm(model_dir, image_spec=image)
    torch.manual_seed(PROBE_SEED)
    if role == "proposer":
        return probe_proposer(loaded.model, loaded.processor, prompts, image)[0]
    if role == "coder":
        proposals = [
            item.proposal
            for item in generate_items(prompts, seed=PROBE_SEED, offset=HELD_OUT_OFFSET)
        ]
        return probe_coder(loaded.model, loaded.processor, proposals, 1, renderer, image)
    return probe_solver(loaded.model, loaded.processor, prompts, PROBE_SEED, renderer, image)[1]


METRICS = {
    "proposer": "Proposer parse rate",
    "coder": "Coder render rate",
    "solver": "Solver accuracy",
}


def measure(
    seeds: list[int],
    prompts: int,
    out: Path,
    learning_rate: float | None = None,
    only: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Shares per role and seed, for the base model and after iteration 1 (with `only`, that
    role's alone, plus the Coder rollouts' render rates or the Solver's probe labels)."""
    runs = {seed: _run(seed, out, learning_rate, only) for seed in seeds}
    results: dict[str, Any] = {"base": {}, "after": {}}
    coder_steps = only[1] if only is not None and only[0] == "coder" else None
    if coder_steps is not None:
        results["rollouts"] = {seed: rollout_render(directory) for seed, directory in runs.items()}
    if only is not None and only[0] == "solver":
        results["labels"] = {seed: probe_labels(directory) for seed, directory in runs.items()}
    first = runs[seeds[0]]
    spec = load_run(first / "run.yaml").spec
    with Renderer(spec.render, spec.image, str(out / "render")) as renderer:
        if coder_steps is not None:
            results["untrained"] = {
                seed: [
                    list(_probe_untrained(directory / model, directory, renderer))
                    for model in ("base/model", "i1/coder-grpo/model")
                ]
                for seed, directory in runs.items()
            }
        for role in [only[0]] if only is not None else METRICS:
            share = _probe(role, first / "base" / "model", prompts, renderer, first / "run.yaml")
            results["base"][role] = [share.hits, share.total]
            results["after"][role] = {}
            for seed, directory in runs.items():
                checkpoint = directory / "i1" / f"{role}-grpo" / "model"
                share = _probe(role, checkpoint, prompts, renderer, directory / "run.yaml")
                results["after"][role][seed] = [share.hits, share.total]
    return results


UNTRAINED_DRAWS = 4
"""SVGs drawn per proposal in the untrained-proposals probe."""


def _probe_untrained(model_dir: Path, run_dir: Path, renderer: Renderer) -> tuple[int, int]:
    """The Coder's render rate on the proposals this iteration's Proposer made for the Solver:
    the distribution the Coder trained on, but proposals it never saw (it trains on the
    `proposals-coder` half)."""
    rows = [
        json.loads(line)
        for line in (run_dir / "i1" / "propose" / "proposals-solver.jsonl").read_text().splitlines()
    ]
    proposals = [Proposal(**row["proposal"]) for row in rows if row["proposal"] is not None]
    image = load_run(run_dir / "run.yaml").spec.image
    loaded = load_vlm(model_dir, image_spec=image)
    torch.manual_seed(PROBE_SEED)
    share = probe_coder(loaded.model, loaded.processor, proposals, UNTRAINED_DRAWS, renderer, image)
    return share.hits, share.total


def rollout_render(run_dir: Path) -> list[list[int]]:
    """[rendered, drawn] of the Coder's rollouts in the first and in the last quarter of its
    steps (training prompts, the policy as it was at each step)."""
    rows = [
        json.loads(line)
        for line in (run_dir / "i1" / "coder-grpo" / "rewards.jsonl").read_text().splitlines()
    ]
    last = max(row["step"] for row in rows)
    quarter = max(1, last // 4)
    spans = [range(1, quarter + 1), range(last - quarter + 1, last + 1)]
    return [
        [
            sum(r["render"] == "ok" for r in rows if r["step"] in s),
            sum(r["step"] in s for r in rows),
        ]
        for s in spans
    ]


def probe_labels(run_dir: Path) -> list[int]:
    """[right, labelled] of the warm-started Solver's majority labels on the run's probes."""
    rows = [
        json.loads(line)
        for line in (run_dir / "i1" / "solver-data" / "probes.jsonl").read_text().splitlines()
    ]
    labelled = [row for row in rows if row["label"] is not None]
    return [sum(row["label_correct"] for row in labelled), len(labelled)]


def _cell(hits: int, total: int) -> str:
    low, high = wilson(hits, total)
    return f"{hits}/{total} = {hits / total:.1%} [{low:.1%}, {high:.1%}]"


def table(results: dict[str, Any]) -> str:
    """A Markdown table: base, after one iteration (pooled), and each seed."""
    lines = [
        "| metric | warm start | after 1 iteration (pooled) | per seed |",
        "|---|---|---|---|",
    ]
    for role, name in METRICS.items():
        if role not in results["base"]:
            continue
        base = results["base"][role]
        after = results["after"][role]
        hits = sum(h for h, _ in after.values())
        total = sum(t for _, t in after.values())
        per_seed = ", ".join(f"s{s}: {h}/{t}" for s, (h, t) in after.items())
        lines.append(f"| {name} | {_cell(*base)} | {_cell(hits, total)} | {per_seed} |")
    if untrained := results.get("untrained"):
        cells = [
            _cell(
                sum(u[k][0] for u in untrained.values()), sum(u[k][1] for u in untrained.values())
            )
            for k in (0, 1)
        ]
        per_seed = ", ".join(
            f"s{s}: {u[0][0]} -> {u[1][0]} of {u[0][1]}" for s, u in untrained.items()
        )
        name = (
            f"Coder render rate, untrained proposals of the run's Proposer ({UNTRAINED_DRAWS} each)"
        )
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {per_seed} |")
    if labels := results.get("labels"):
        pooled = _cell(sum(h for h, _ in labels.values()), sum(t for _, t in labels.values()))
        per_seed = ", ".join(f"s{s}: {h}/{t}" for s, (h, t) in labels.items())
        name = "Solver-data majority labels right on the known-answer probes"
        lines.append(f"| {name} | {pooled} | | {per_seed} |")
    for index, span in enumerate(["first", "last"]):
        rollouts = [r[index] for r in results.get("rollouts", {}).values()]
        if rollouts:
            pooled = _cell(sum(h for h, _ in rollouts), sum(t for _, t in rollouts))
            per_seed = ", ".join(
                f"s{s}: {r[index][0]}/{r[index][1]}" for s, r in results["rollouts"].items()
            )
            name = f"Coder rollouts' render rate, {span} quarter of steps"
            lines.append(f"| {name} | | {pooled} | {per_seed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-learning")
    parser.add_argument("--learning-rate", type=float, help="override every role's (a sweep)")
    check = parser.add_mutually_exclusive_group()
    check.add_argument("--coder-steps", type=int, help="the Coder learnability check")
    check.add_argument("--solver-steps", type=int, help="the self-evolution check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    only = (
        ("coder", args.coder_steps)
        if args.coder_steps is not None
        else ("solver", args.solver_steps)
        if args.solver_steps is not None
        else None
    )
    results = measure(args.seeds, args.prompts, args.out, args.learning_rate, only)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    rate = args.learning_rate or "examples/run.yaml's"
    print(f"seeds {args.seeds}, learning rate {rate}, {args.prompts} held-out prompts per role")
    print(table(results))


if __name__ == "__main__":
    main()
