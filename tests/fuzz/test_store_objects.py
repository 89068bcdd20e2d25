"""Objects read back from a run's store, by the loaders the stages and `mmzero status` use:
manifests (and the files they vouch for), JSON Lines records, health figures, the pinned run
file, and a trainer checkpoint's state and tensor files. Truncated, corrupted or with a wrong
digest, each is read or refused with one error naming its key or path, the fix included.
Seeded corpus: tests/data/bad-input/store/."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import fuzzing
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmzero_runtime.alarms import HEALTH_FILE, collect
from mmzero_runtime.spec import SpecError, load_run
from mmzero_runtime.stages.errors import StageError
from mmzero_runtime.stages.execution.runner import pin_run
from mmzero_runtime.storage.errors import StoreError
from mmzero_runtime.storage.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    StageOutput,
    read_manifest,
    verify,
)
from mmzero_runtime.storage.records import dumps_jsonl, parse_jsonl
from mmzero_runtime.storage.store import LocalStore
from mmzero_runtime.training import checkpoint as ckpt
from mmzero_runtime.training.errors import CheckpointError

pytestmark = pytest.mark.fuzz

SEEDS = fuzzing.CORPUS / "store"
PREFIX = "i1/propose"
ROWS = dumps_jsonl([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
HEALTH = json.dumps({"figures": {"diversity/caption_distinct_share": 0.5}}).encode()
RUN = load_run(fuzzing.EXAMPLE)


def _finished_run(root: Path) -> LocalStore:
    """A run directory whose `i1/propose` stage finished: rows, health figures, a manifest."""
    store = LocalStore(root / "run")
    pin_run(RUN, store)
    output = StageOutput(store, PREFIX, "i1-propose")
    output.put_bytes("rows.jsonl", ROWS)
    output.put_bytes(HEALTH_FILE, HEALTH)
    output.commit({"stage": "i1-propose"})
    (store.root / PREFIX / "sub").mkdir()
    return store


def _read_stage(store: LocalStore) -> Manifest | None:
    """The stage's manifest, verified; None when refused by the rule."""
    fuzzing.TRIED["store"] += 1
    try:
        with fuzzing.bounded(f"verify {store}"):
            return verify(store, PREFIX)
    except StoreError as error:  # ManifestError is one
        message = str(error)
        assert PREFIX in message and "\n" not in message, message
        return None


def _status(store: LocalStore) -> None:
    """`mmzero status` reads every manifest and health file of the run: answered or refused."""
    fuzzing.mmzero("status", str(store.root), entry="store").assert_answered()


@fuzzing.fuzz()
@given(
    target=st.sampled_from([MANIFEST, "rows.jsonl", HEALTH_FILE, "run.yaml"]),
    how=st.sampled_from(["mutate", "empty", "directory", "delete"]),
    data=st.data(),
)
def test_stored_object_corrupted_is_refused_naming_its_key(
    target: str, how: str, data: st.DataObject
) -> None:
    with fuzzing.scratch() as tmp:
        store = _finished_run(tmp)
        path = store.root / ("run.yaml" if target == "run.yaml" else f"{PREFIX}/{target}")
        original = path.read_bytes()
        path.unlink()
        changed = data.draw(fuzzing.mutated_bytes(original)) if how == "mutate" else b""
        if how == "directory":
            path.mkdir()
        elif how != "delete":
            path.write_bytes(changed)
        _status(store)
        if target != "run.yaml":
            manifest = _read_stage(store)
            vouched = target != MANIFEST and (how != "mutate" or changed != original)
            assert manifest is None or not vouched, "a changed file passed its manifest"


GOOD_MANIFEST = Manifest(
    "i1-propose", {"rows.jsonl": FileEntry("0" * 64, 3)}, {"stage": "i1-propose"}
).to_json()


@fuzzing.fuzz(scale=3)
@given(data=fuzzing.mutated_bytes(GOOD_MANIFEST) | st.binary(max_size=256))
def test_manifest_of_any_bytes_is_read_or_refused_naming_its_key(data: bytes) -> None:
    for body in (data, GOOD_MANIFEST + data):
        fuzzing.TRIED["store"] += 1
        try:
            Manifest.from_json(body, f"{PREFIX}/{MANIFEST}")
        except StoreError as error:
            assert f"{PREFIX}/{MANIFEST}" in str(error) and "\n" not in str(error)


@fuzzing.fuzz(scale=2)
@given(document=fuzzing.edited_document(json.loads(GOOD_MANIFEST)))
def test_manifest_with_fields_edited_is_read_whole_or_refused(document: Any) -> None:
    fuzzing.TRIED["store"] += 1
    try:
        manifest = Manifest.from_json(json.dumps(document).encode(), PREFIX)
    except StoreError as error:
        assert PREFIX in str(error) and "\n" not in str(error)
        return
    assert isinstance(manifest.stage, str) and isinstance(manifest.meta, dict)
    for entry in manifest.files.values():
        assert isinstance(entry.sha256, str) and isinstance(entry.size, int)


@fuzzing.fuzz(scale=3)
@given(data=fuzzing.mutated_bytes(ROWS) | st.binary(max_size=128))
def test_records_of_any_bytes_are_read_or_refused_naming_key_and_line(data: bytes) -> None:
    fuzzing.TRIED["store"] += 1
    try:
        rows = list(parse_jsonl(data, f"{PREFIX}/rows.jsonl"))
    except StoreError as error:
        assert f"{PREFIX}/rows.jsonl line " in str(error) and "\n" not in str(error)
        return
    assert all(isinstance(row, dict) for row in rows)


def _checkpoint(directory: Path, state: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ckpt.STATE_FILE).write_bytes(state)
    (directory / ckpt.OPTIMIZER_FILE).write_bytes(b"")
    (directory / ckpt.RNG_FILE).write_bytes(b"")
    return directory


GOOD_STATE = {
    "format": ckpt.FORMAT_VERSION,
    "step": 2,
    "history": [{"loss": 0.5}],
    "spec": {"group_size": 4},
    "reference": {"fingerprint": "abc", "source": "/models/base"},
    "world_size": 1,
}


@fuzzing.fuzz(scale=2)
@given(
    body=fuzzing.edited_document(GOOD_STATE).map(lambda d: json.dumps(d).encode())
    | fuzzing.mutated_bytes(json.dumps(GOOD_STATE).encode())
)
def test_trainer_state_edited_or_corrupted_is_whole_or_refused(body: bytes) -> None:
    fuzzing.TRIED["store"] += 1
    with fuzzing.scratch() as tmp:
        directory = _checkpoint(tmp / "checkpoint", body)
        try:
            state = ckpt.read_state(directory)
            assert isinstance(state["step"], int) and isinstance(state["history"], list)
            assert isinstance(state["spec"], dict) and isinstance(state["reference"], dict)
            ckpt.check_compatible(directory, state, reference_fingerprint="abc",
                                  reference_source=None, world_size=1)  # fmt: skip
        except CheckpointError as error:
            assert str(directory) in str(error) and "\n" not in str(error)


def _rng_file() -> bytes:
    buffer = io.BytesIO()
    torch.save(ckpt.capture_rng(), buffer)
    return buffer.getvalue()


RNG = _rng_file()


@fuzzing.fuzz()
@given(data=fuzzing.mutated_bytes(RNG))
def test_tensor_file_corrupted_is_loaded_or_refused_naming_the_file(data: bytes) -> None:
    fuzzing.TRIED["store"] += 1
    with fuzzing.scratch() as tmp:
        path = tmp / ckpt.RNG_FILE
        path.write_bytes(data)
        try:
            with fuzzing.bounded(f"load_tensors {path}"):
                ckpt.load_tensors(path)
        except CheckpointError as error:
            assert str(path) in str(error) and "\n" not in str(error)


MANIFESTS = [
    # a file changed after the stage finished
    ("manifest-wrong-digest.json", "i1/propose/rows.jsonl: sha256 "),
    ("manifest-missing-file.json", "i1/propose/gone.jsonl: missing"),
    # a name that is a directory in the store (was an IsADirectoryError traceback)
    ("manifest-names-a-directory.json", "i1/propose/sub: not a readable file (Is a directory)"),
    # a name outside the stage's prefix: refused, never read
    ("manifest-escapes-the-store.json", "unreadable manifest (files: artifact key '../../etc"),
    ("manifest-truncated.json", "unreadable manifest"),
    ("manifest-not-utf8.json", "unreadable manifest"),
    # `files` a list (was an AttributeError traceback)
    ("manifest-files-list.json", "unreadable manifest (files: expected a mapping"),
    ("manifest-entry-string.json", "unreadable manifest (files.rows.jsonl: expected"),
    ("manifest-size-text.json", "unreadable manifest (files.rows.jsonl: expected"),
    # `meta` a list: was read, then failed wherever meta.get() was called
    ("manifest-meta-list.json", "unreadable manifest (meta: expected a mapping"),
    # was a RecursionError traceback
    ("manifest-deep-nesting.json", "unreadable manifest (nested too deeply"),
    ("manifest-list.json", "unreadable manifest (expected a mapping"),
]


@pytest.mark.parametrize(("name", "phrase"), MANIFESTS, ids=[n for n, _ in MANIFESTS])
def test_seeded_manifest_is_refused_naming_the_key_and_the_fix(
    name: str, phrase: str, tmp_path: Path
) -> None:
    store = _finished_run(tmp_path)
    shutil.copy(SEEDS / name, store.root / PREFIX / MANIFEST)
    with pytest.raises(StoreError) as refused:
        read_manifest(store, PREFIX) and verify(store, PREFIX)
    message = str(refused.value)
    assert phrase in message and "\n" not in message, message
    assert "delete" in message.casefold(), message  # the fix: rerun the stage
    status = fuzzing.mmzero("status", str(store.root), entry="store")
    if "unreadable manifest" in message:  # status reads manifests; it does not hash files
        status.assert_refused(f"{PREFIX}/{MANIFEST}: unreadable manifest")
    else:
        assert status.code == 0 and "i1-propose" in status.stdout, status


SEEDED_FILES = [
    # records cut mid-line and with a latin-1 byte
    ("rows-truncated.jsonl", "line 2: not JSON"),
    ("rows-not-utf8.jsonl", "line 1: not JSON"),
    # trainer states: each refused with what to do (was a TypeError or KeyError on resume)
    ("state-list.json", "trainer state format 'list', expected 1"),
    ("state-format-2.json", "trainer state format 2, expected 1"),
    ("state-reference-text.json", "reference: expected a mapping"),
    ("state-step-text.json", "step: expected an integer"),
    ("state-not-utf8.json", "unreadable trainer state"),
    # 5000 digits: past Python's limit for int() (found by `make fuzz`)
    ("state-huge-integer.json", "unreadable trainer state (Exceeds the limit (4300 digits)"),
    # was a RecursionError traceback
    ("state-deep-nesting.json", "unreadable trainer state (nested too deeply"),
    # tensor files: not a zip, cut in half, the zip's magic flipped (a flip inside a tensor's
    # bytes loads: torch.load checks no CRC, and scratch checkpoints have no manifest)
    ("rng-not-a-zip.pt", "corrupt checkpoint file"),
    ("rng-truncated.pt", "corrupt checkpoint file"),
    ("rng-flipped-magic.pt", "corrupt checkpoint file"),
]


def _read_seed(name: str, tmp_path: Path) -> None:
    data = (SEEDS / name).read_bytes()
    if name.startswith("rows-"):
        list(parse_jsonl(data, f"{PREFIX}/{name}"))
    elif name.startswith("state-"):
        ckpt.read_state(_checkpoint(tmp_path / "checkpoint", data))
    else:
        (tmp_path / name).write_bytes(data)
        ckpt.load_tensors(tmp_path / name)


@pytest.mark.parametrize(("name", "phrase"), SEEDED_FILES, ids=[n for n, _ in SEEDED_FILES])
def test_seeded_store_file_is_refused_with_its_fix(name: str, phrase: str, tmp_path: Path) -> None:
    with pytest.raises((StoreError, CheckpointError)) as refused:
        _read_seed(name, tmp_path)
    message = str(refused.value)
    assert phrase in message and "\n" not in message, message


@pytest.mark.parametrize("name", ["health-figures-list.json", "health-deep-nesting.json"])
def test_seeded_health_file_is_skipped_with_a_warning(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unreadable health figures only silence that stage's alarms (alarms.collect)."""
    found = collect([("i1-propose", PREFIX)], lambda key: (SEEDS / name).read_bytes())
    assert found == {}
    assert f"{PREFIX}/{HEALTH_FILE}: unreadable health figures" in caplog.text


@pytest.mark.parametrize("name", ["not-utf8.yaml", "deep-nesting.yaml", "alias-bomb.yaml"])
def test_pinned_run_file_corrupted_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    store = _finished_run(tmp_path)
    shutil.copy(fuzzing.CORPUS / "run-file" / name, store.root / "run.yaml")
    with pytest.raises((SpecError, StageError), match=r"/run\.yaml: "):
        pin_run(RUN, store)
