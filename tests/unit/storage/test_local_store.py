"""The local artifact store and stage manifests: atomic writes, done-ness, corruption found."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzero_runtime.storage.errors import ManifestError, StoreError
from mmzero_runtime.storage.manifest import StageOutput, read_manifest, verify
from mmzero_runtime.storage.store import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_write_then_read_returns_the_same_bytes(store: LocalStore) -> None:
    store.write_bytes("i1/propose/a.jsonl", b"one\n")
    assert store.read_bytes("i1/propose/a.jsonl") == b"one\n"
    assert store.exists("i1/propose/a.jsonl")
    assert store.list("i1") == ["i1/propose/a.jsonl"]


def test_failed_write_leaves_nothing_visible(store: LocalStore) -> None:
    with pytest.raises(RuntimeError), store._atomic(store.path("i1/x.bin")) as handle:
        handle.write(b"half")
        raise RuntimeError("killed mid-write")
    assert not store.exists("i1/x.bin")
    assert store.list("i1") == []
    assert list((store.root / "i1").iterdir()) == []  # no temp file left behind


@pytest.mark.parametrize(
    "key",
    ["/etc/passwd", "../outside", "i1/../../x", "", "i1//x", "./x"],
    ids=["absolute", "parent", "nested-parent", "empty", "double-slash", "dot"],
)
def test_keys_that_escape_the_root_are_refused(store: LocalStore, key: str) -> None:
    with pytest.raises(StoreError, match="not a plain relative path"):
        store.write_bytes(key, b"x")


def test_missing_object_error_names_the_key(store: LocalStore) -> None:
    with pytest.raises(StoreError, match="i1/none"):
        store.read_bytes("i1/none")


def test_stage_is_done_only_after_commit(store: LocalStore, tmp_path: Path) -> None:
    output = StageOutput(store, "i1/coder-grpo", "i1-coder-grpo")
    output.put_bytes("train.jsonl", b"{}\n")
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    output.put_tree("model", model)
    assert read_manifest(store, "i1/coder-grpo") is None  # files written, not yet done
    manifest = output.commit({"steps": 3})
    assert read_manifest(store, "i1/coder-grpo") == manifest
    assert sorted(manifest.files) == ["model/config.json", "model/sub/w.bin", "train.jsonl"]
    assert verify(store, "i1/coder-grpo").meta == {"steps": 3}


def test_checkpoint_digest_covers_only_its_files_and_changes_with_content(
    store: LocalStore,
) -> None:
    first = StageOutput(store, "a", "a")
    first.put_bytes("model/w.bin", b"1")
    first.put_bytes("log.txt", b"x")
    second = StageOutput(store, "b", "b")
    second.put_bytes("model/w.bin", b"1")
    second.put_bytes("log.txt", b"different log")
    third = StageOutput(store, "c", "c")
    third.put_bytes("model/w.bin", b"2")
    m1, m2, m3 = first.commit(), second.commit(), third.commit()
    assert m1.digest("model") == m2.digest("model")
    assert m1.digest("model") != m3.digest("model")
    with pytest.raises(ManifestError, match="no files under"):
        m1.digest("missing")


def test_verify_names_every_corrupt_or_missing_file(store: LocalStore) -> None:
    output = StageOutput(store, "i1/propose", "i1-propose")
    output.put_bytes("a.jsonl", b"a")
    output.put_bytes("b.jsonl", b"b")
    output.commit()
    store.write_bytes("i1/propose/a.jsonl", b"tampered")
    store.path("i1/propose/b.jsonl").unlink()
    with pytest.raises(ManifestError) as caught:
        verify(store, "i1/propose")
    assert "a.jsonl: sha256" in str(caught.value)
    assert "b.jsonl: missing" in str(caught.value)
    assert "Delete its manifest" in str(caught.value)


def test_unreadable_manifest_is_a_clear_error(store: LocalStore) -> None:
    store.write_bytes("i1/propose/MANIFEST.json", b"{not json")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        read_manifest(store, "i1/propose")


def test_manifest_cannot_be_written_as_an_output(store: LocalStore) -> None:
    with pytest.raises(StoreError, match="written by commit"):
        StageOutput(store, "i1/x", "i1-x").put_bytes("MANIFEST.json", b"{}")
