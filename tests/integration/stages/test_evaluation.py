"""The evaluation stage: benchmark files and held-out items, graded as training grades, and the
same checkpoint evaluated twice gives byte-identical result files (issue 7 §4)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from mmzero_runtime.rewards.grading import Grader, GradeTable
from mmzero_runtime.rewards.solver import SolverResponse, solver_grade_requests, solver_rewards
from mmzero_runtime.roles import extract_boxed
from mmzero_runtime.spec import GradingSpec, SolverRewardSpec, parse_run
from mmzero_runtime.stages.execution.runner import run_stage
from mmzero_runtime.stages.execution.transfer import import_base_model
from mmzero_runtime.stages.kinds.benchmarks import BenchmarkItem, grade_benchmark
from mmzero_runtime.storage.manifest import StageOutput, sha256_file
from mmzero_runtime.storage.store import LocalStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
RESULT_FILES = ("results.jsonl", "benchmarks/colours/predictions.jsonl", "summary.json",
                "health.json")  # fmt: skip

# (Solver response, true answer, outcome): the cases where graders most often disagree
FIXTURES = [
    ("<think>x</think> \\boxed{3}", "3", "correct"),
    ("<think>x</think> \\boxed{3.0}", "3", "correct"),
    ("<think>x</think> \\boxed{\\frac{1}{2}}", "0.5", "correct"),
    ("<think>x</think> \\boxed{Red}", "red", "correct"),
    ("<think>x</think> \\boxed{ 12 }", "12", "correct"),
    ("<think>x</think> \\boxed{4}", "3", "wrong"),
    ("<think>x</think> \\boxed{blue}", "red", "wrong"),
    ("the answer is 3", "3", "wrong"),
    ("<think>x</think> \\boxed{None}", "None", "wrong"),
    ("<think>x</think> \\boxed{30\\%}", "30", "correct"),
]


def test_evaluation_grades_every_fixture_as_the_training_reward_does() -> None:
    answers = [extract_boxed(response) for response, _, _ in FIXTURES]
    items = [BenchmarkItem(f"q{i}", "Q", truth, b"") for i, (_, truth, _) in enumerate(FIXTURES)]
    with Grader(GradingSpec()) as grader:
        outcomes, _ = grade_benchmark(grader, items, answers)
        responses = [
            SolverResponse(item.id, a, True) for item, a in zip(items, answers, strict=True)
        ]
        labels = {item.id: item.answer for item in items}
        table = GradeTable(grader.grade(solver_grade_requests(responses, labels)))
    rewards = solver_rewards(responses, labels=labels, spec=SolverRewardSpec(), grades=table)
    assert outcomes == [expected for _, _, expected in FIXTURES]
    assert [r.accuracy for r in rewards] == [float(o == "correct") for o in outcomes]


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _benchmark(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i, colour in enumerate(("red", "blue", "green")):
        (directory / f"{colour}.png").write_bytes(_png(colour))
        rows.append({"id": f"c{i}", "image": f"{colour}.png", "question": "Which colour fills "
                     "the picture?", "answer": colour})  # fmt: skip
        rows.append({"id": f"m{i}", "image": f"{colour}.png", "question": "The colour?",
                     "choices": ["red", "blue", "green"], "answer": colour})  # fmt: skip
    rows.append({"id": "broken", "image": "missing.png", "question": "Q", "answer": "1"})
    path = directory / "colours.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _evaluate(directory: Path, model: Path, benchmark: Path) -> LocalStore:
    """The example spec on `model`, evaluated with the model as both Solver and base."""
    document = yaml.safe_load((ROOT / "examples" / "run.yaml").read_text())
    document["spec"]["model"] = str(model)
    document["spec"]["evaluation"].update(
        held_out_items=3, benchmarks=[{"name": "colours", "path": str(benchmark)}]
    )
    run = parse_run(document, "test")
    store = LocalStore(directory)
    import_base_model(run, store)
    solver = StageOutput(store, "i1/solver-grpo", "i1-solver-grpo")
    solver.put_tree("model", model)
    solver.commit()
    run_stage(run, store, "evaluate", 1)
    return store


def test_evaluating_one_checkpoint_twice_gives_identical_files_with_benchmarks(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    benchmark = _benchmark(tmp_path / "bench")
    first = _evaluate(tmp_path / "a", tiny_vlm_dir, benchmark)
    second = _evaluate(tmp_path / "b", tiny_vlm_dir, benchmark)
    for name in RESULT_FILES:
        key = f"i1/evaluate/{name}"
        assert first.read_bytes(key) == second.read_bytes(key), name
    summary = json.loads(first.read_bytes("i1/evaluate/summary.json"))
    bench = summary["benchmarks"]["colours"]
    assert bench["sha256"] == sha256_file(benchmark) and bench["items"] == 6
    assert [row["row"] for row in bench["invalid_rows"]] == [7]
    assert bench["solver"]["questions"] == bench["baseline"]["questions"] == 6
    lines = first.read_bytes("i1/evaluate/benchmarks/colours/predictions.jsonl").splitlines()
    predictions = [json.loads(line) for line in lines]
    assert {(p["model"], p["item"]) for p in predictions} == {
        (m, f"{k}{i}") for m in ("solver", "baseline") for k in "cm" for i in range(3)
    }
    assert all(p["outcome"] in ("correct", "wrong") and p["image_sha256"] for p in predictions)
    assert {p["truth"] for p in predictions if p["choices"]} == {"A", "B", "C"}
    assert summary["solver"]["questions"] == 6  # 3 held-out items, easy and hard
    assert "best" in summary["selection"] and "never select" in summary["selection"]


def test_a_judge_is_asked_only_about_free_form_answers_the_grader_marked_wrong(
    tiny_vlm_dir: Path, tmp_path: Path, spawn_server: Any
) -> None:
    """The judge here is a real OpenAI-compatible server (`mmzero serve` of the tiny model);
    its one-word replies are noise, so every verdict it gives is kept as said."""
    from mmzero_runtime.spec import MMZeroRun, RunSpec
    from mmzero_runtime.stages.graph.plan import all_stages
    from mmzero_runtime.stages.kinds.evaluate import apply_judge
    from mmzero_runtime.stages.process.context import StageContext
    from mmzero_runtime.storage.manifest import tree_digest

    url = spawn_server("serve", str(tiny_vlm_dir), "--device", "cpu", "--max-tokens", "8")
    judge = {"url": url, "model": tree_digest(tiny_vlm_dir, "model"), "version": "tiny-test"}
    spec = RunSpec.model_validate({"iterations": 1, "evaluation": {"judge": judge}})
    stage = next(s for s in all_stages(spec) if s.kind == "evaluate")
    ctx = StageContext(MMZeroRun(spec=spec), LocalStore(tmp_path), stage)
    items = [BenchmarkItem("a", "Colour?", "red", b""), BenchmarkItem("b", "Colour?", "red", b""),
             BenchmarkItem("c", "Which?", "A", b"", ("x", "y"))]  # fmt: skip
    rows = [{"model": "solver", "item": i.id, "answer": a, "outcome": o}
            for i, a, o in zip(items, ("rouge", "red", "B"), ("wrong", "correct", "wrong"),
                               strict=True)]  # fmt: skip
    apply_judge(ctx, items, rows)
    asked = {r["item"]: r["judge_verdict"] for r in rows}
    assert asked["b"] is None and asked["c"] is None  # graded correct; multiple choice
    assert asked["a"] in ("yes", "no", "unclear")
    assert rows[0]["grader_outcome"] == "wrong"
    assert rows[0]["outcome"] == ("correct" if asked["a"] == "yes" else "wrong")
