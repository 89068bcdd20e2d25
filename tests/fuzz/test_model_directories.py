"""Model directories in and out of a run's store: `mmzero import DIR` with a config.json of any
bytes or fields, and `mmzero export OUT` of a stored checkpoint that is corrupted, pruned or
asked for by a wrong iteration, into any kind of OUT. A refusal names the directory or the
stored key and writes nothing: no base model in the store, nothing at OUT, no staging left.
Seeded corpus: tests/data/bad-input/model-dir/."""

from __future__ import annotations

import json
from pathlib import Path

import fuzzing
import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import Qwen2VLConfig

from mmzero_runtime.stages.graph import keys
from mmzero_runtime.stages.health.retention import PRUNED_FILE
from mmzero_runtime.storage.manifest import StageOutput
from mmzero_runtime.storage.store import LocalStore

pytestmark = pytest.mark.fuzz

SEEDS = fuzzing.CORPUS / "model-dir"
CONFIG = json.loads(Qwen2VLConfig(vocab_size=64, hidden_size=16).to_json_string())
CONFIG_BYTES = json.dumps(CONFIG).encode()


def _import(tmp: Path, model: Path) -> None:
    """`mmzero import MODEL`: done with the base model stored, or refused with none stored."""
    store = tmp / "store"
    outcome = fuzzing.mmzero(
        "import", str(model), "--spec", str(fuzzing.EXAMPLE), "--run-dir", str(store),
        entry="model-dir",
    )  # fmt: skip
    if outcome.code == 0:
        assert (store / "base" / "MANIFEST.json").is_file(), outcome
        return
    outcome.assert_refused(str(model))
    assert fuzzing.files_under(store) == [], outcome


@fuzzing.fuzz()
@given(
    config=fuzzing.mutated_bytes(CONFIG_BYTES)
    | fuzzing.edited_document(CONFIG).map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=64)
)
def test_import_of_a_config_of_any_bytes_or_fields_is_done_or_refused(config: bytes) -> None:
    with fuzzing.scratch() as tmp:
        model = tmp / "model"
        model.mkdir()
        (model / "config.json").write_bytes(config)
        _import(tmp, model)


IMPORTS = [
    # not JSON, a list, no model_type, a latin-1 byte, 5000 nested brackets
    ("config-not-json", "no readable config.json"),
    ("config-list", "no readable config.json"),  # was an AttributeError traceback
    ("config-no-model-type", "no readable config.json"),
    ("config-not-utf8", "no readable config.json"),
    ("config-deep-nesting", "no readable config.json"),  # was a RecursionError traceback
    # a text-only model and a model type transformers does not know
    ("config-text-only", "model_type 'qwen2' is a text-only model"),
    ("config-unknown-type", "no readable config.json"),
    ("config-model-type-number", "no readable config.json"),  # was an AttributeError traceback
    ("config-vision-not-mapping", "no readable config.json"),  # was a TypeError traceback
    ("config-is-a-directory", "no readable config.json"),
    ("no-config", "no readable config.json"),
]


def test_seeded_corpus_covers_every_model_directory() -> None:
    assert sorted(name for name, _ in IMPORTS) == sorted(p.name for p in SEEDS.iterdir())


@pytest.mark.parametrize(("name", "phrase"), IMPORTS, ids=[n for n, _ in IMPORTS])
def test_seeded_model_directory_is_refused_with_nothing_stored(
    name: str, phrase: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    outcome = fuzzing.mmzero(
        "import", str(SEEDS / name), "--spec", str(fuzzing.EXAMPLE), "--run-dir", str(store),
        entry="model-dir",
    )  # fmt: skip
    outcome.assert_refused(f"model {SEEDS / name}: {phrase}")
    assert len(outcome.stderr) < 1000 and fuzzing.files_under(store) == [], outcome


@pytest.mark.parametrize("path", ["absent", "file.txt"], ids=["missing", "a-file"])
def test_import_of_no_directory_is_refused(path: str, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a model\n")
    _import(tmp_path, tmp_path / path)


def _store_with_checkpoint(tmp: Path) -> LocalStore:
    """A store whose Solver GRPO stage of iteration 1 finished, with a two-file model."""
    store = LocalStore(tmp / "store")
    output = StageOutput(store, "i1/solver-grpo", "i1-solver-grpo")
    output.put_bytes(f"{keys.MODEL_DIR}/config.json", CONFIG_BYTES)
    output.put_bytes(f"{keys.MODEL_DIR}/model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    output.commit({"stage": "i1-solver-grpo"})
    return store


OUTS = st.sampled_from(["new", "empty-dir", "full-dir", "a-file", "under-a-file", "store"])
STORE_FAULTS = st.sampled_from(
    ["none", "mutate-weights", "delete-config", "delete-manifest", "mutate-manifest",
     "pruned-marker", "pruned-marker-corrupt", "weights-a-directory"]
)  # fmt: skip
ITERATIONS = st.sampled_from([None, "0", "1", "2", "-1", "99", "1e3", "x"])


def _out(tmp: Path, kind: str) -> Path:
    (tmp / "a-file").write_text("keep me\n")
    match kind:
        case "empty-dir":
            (tmp / "out").mkdir()
        case "full-dir":
            (tmp / "out").mkdir()
            (tmp / "out" / "mine.txt").write_text("keep me\n")
        case "a-file":
            return tmp / "a-file"
        case "under-a-file":
            return tmp / "a-file" / "out"
        case "store":
            return tmp / "store" / "i1" / "solver-grpo" / "model"
    return tmp / "out"


def _fault(store: LocalStore, fault: str, data: st.DataObject) -> None:
    stage = store.root / "i1" / "solver-grpo"
    weights = stage / keys.MODEL_DIR / "model.safetensors"
    match fault:
        case "mutate-weights":
            weights.write_bytes(data.draw(fuzzing.mutated_bytes(weights.read_bytes())))
        case "delete-config":
            (stage / keys.MODEL_DIR / "config.json").unlink()
        case "delete-manifest":
            (stage / "MANIFEST.json").unlink()
        case "mutate-manifest":
            manifest = stage / "MANIFEST.json"
            manifest.write_bytes(data.draw(fuzzing.mutated_bytes(manifest.read_bytes())))
        case "pruned-marker":
            (stage / PRUNED_FILE).write_text(json.dumps({"reason": "removed by a test"}))
        case "pruned-marker-corrupt":
            (stage / PRUNED_FILE).write_bytes(data.draw(st.binary(max_size=16)))
        case "weights-a-directory":
            weights.unlink()
            weights.mkdir()


def _tree(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in fuzzing.files_under(directory)}


@fuzzing.fuzz(scale=2)
@given(out=OUTS, fault=STORE_FAULTS, iteration=ITERATIONS, data=st.data())
def test_export_is_exact_or_refused_with_nothing_written(
    out: str, fault: str, iteration: str | None, data: st.DataObject
) -> None:
    with fuzzing.scratch() as tmp:
        store = _store_with_checkpoint(tmp)
        _fault(store, fault, data)
        target = _out(tmp, out)
        before = _tree(tmp)
        argv = ["export", str(target), "--spec", str(fuzzing.EXAMPLE), "--role", "solver",
                "--run-dir", str(store.root)]  # fmt: skip
        outcome = fuzzing.mmzero(*argv, *(["--iteration", iteration] if iteration else []),
                                 entry="model-dir")  # fmt: skip
        if outcome.code == 0:
            exported = _tree(target)
            assert exported == _tree(store.root / "i1" / "solver-grpo" / keys.MODEL_DIR)
            assert set(exported) == {"config.json", "model.safetensors"}, outcome
        else:
            outcome.assert_refused()
            assert _tree(tmp) == before, f"a refused export changed files: {outcome}"
        assert not list(target.parent.glob(".export-*")) if target.parent.is_dir() else True


def test_export_of_an_iteration_outside_the_run_is_refused_naming_it(tmp_path: Path) -> None:
    store = _store_with_checkpoint(tmp_path)
    for iteration, phrase in [("-1", "iteration -1 is outside"), ("99", "iteration 99 is")]:
        outcome = fuzzing.mmzero(
            "export", str(tmp_path / "out"), "--spec", str(fuzzing.EXAMPLE), "--role", "solver",
            "--run-dir", str(store.root), "--iteration", iteration,
        )  # fmt: skip
        outcome.assert_refused(phrase, "from 0 (the base model) to 1: pass one of those")
    assert not (tmp_path / "out").exists()
