"""The S3 artifact store against a real MinIO on 127.0.0.1: the local store's contract, manifests
uploaded last, multipart files, an outage in the middle of a stage's upload, and clear errors
for a dead store, wrong credentials and a missing bucket, never showing the secret."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mmzero_runtime.storage.errors import ManifestError, StoreError
from mmzero_runtime.storage.manifest import StageOutput, read_manifest, verify
from mmzero_runtime.storage.s3 import PART_SIZE, S3Store
from mmzero_runtime.storage.store import ArtifactStore, LocalStore

pytestmark = pytest.mark.integration


def _s3(
    server: Any, tmp_path: Path, bucket: str | None = None, run: str = "demo", **options: Any
) -> S3Store:
    if bucket is None:
        bucket = f"t-{uuid.uuid4().hex[:12]}"
        server.make_bucket(bucket)
    return S3Store(
        f"s3://{bucket}/runs/{run}",
        endpoint=server.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        root=tmp_path / f"mirror-{run}",
        **options,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each backend in turn: every test below holds for both."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return _s3(request.getfixturevalue("minio_server"), tmp_path)


def test_objects_round_trip_and_list_under_their_prefix(store: ArtifactStore) -> None:
    store.write_bytes("i1/propose/a.jsonl", b"one\n")
    store.write_bytes("i1/propose/sub/b.bin", b"\x00\x01")
    store.write_bytes("i10/other.txt", b"x")
    assert store.read_bytes("i1/propose/a.jsonl") == b"one\n"
    assert store.exists("i1/propose/a.jsonl") and not store.exists("i1/propose")
    assert store.list("i1") == ["i1/propose/a.jsonl", "i1/propose/sub/b.bin"]
    store.delete_prefix("i1/propose")
    assert store.list("i1") == [] and store.exists("i10/other.txt")


def test_deleting_a_run_removes_it_and_its_local_copies(store: ArtifactStore) -> None:
    store.write_bytes("i1/coder-grpo/model/config.json", b"{}")
    store.write_bytes("run.yaml", b"spec: {}")
    copy = store.path("i1/coder-grpo/model")
    store.delete_prefix("i1/coder-grpo/model")
    assert not copy.exists() and store.exists("run.yaml")
    store.path("run.yaml")
    (store.root / "unrelated.txt").write_text("not the store's")
    store.delete_all()
    assert not store.exists("run.yaml") and not (store.root / "run.yaml").exists()
    assert not store.list("i1")
    assert isinstance(store, LocalStore) or (store.root / "unrelated.txt").exists()


def test_deleting_a_run_leaves_the_run_whose_name_extends_it(
    minio_server: Any, tmp_path: Path
) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    minio_server.make_bucket(bucket)
    demo = _s3(minio_server, tmp_path, bucket)
    demo.write_bytes("run.yaml", b"a")
    other = _s3(minio_server, tmp_path, bucket, run="demo-2")
    other.write_bytes("run.yaml", b"b")
    demo.delete_all()
    assert not demo.exists("run.yaml") and other.read_bytes("run.yaml") == b"b"


def test_missing_objects_and_escaping_keys_are_named(store: ArtifactStore) -> None:
    with pytest.raises(StoreError, match="i1/none"):
        store.read_bytes("i1/none")
    with pytest.raises(StoreError, match="not a plain relative path"):
        store.write_bytes("../outside", b"x")


def test_path_gives_local_files_for_an_object_and_a_prefix(
    store: ArtifactStore, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"a": 1}')
    (model / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 100)
    output = StageOutput(store, "i1/coder-grpo", "i1-coder-grpo")
    output.put_tree("model", model)
    output.commit()
    local = store.path("i1/coder-grpo/model")
    assert (local / "config.json").read_text() == '{"a": 1}'
    assert (local / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 100
    assert store.path("i1/coder-grpo/model/config.json") == local / "config.json"


def test_stage_is_done_only_after_its_manifest_and_corruption_is_named(
    store: ArtifactStore,
) -> None:
    output = StageOutput(store, "i1/propose", "i1-propose")
    output.put_bytes("proposals.jsonl", b'{"q": 1}\n')
    assert read_manifest(store, "i1/propose") is None
    output.commit({"n": 1})
    assert verify(store, "i1/propose").meta == {"n": 1}
    store.write_bytes("i1/propose/proposals.jsonl", b'{"q": 2}\n')  # changed behind its back
    with pytest.raises(ManifestError, match=r"i1/propose/proposals\.jsonl: sha256"):
        verify(store, "i1/propose")


def test_large_file_goes_up_in_parts_and_comes_back_intact(
    minio_server: Any, tmp_path: Path
) -> None:
    store = _s3(minio_server, tmp_path)
    big = tmp_path / "shard.safetensors"
    big.write_bytes(bytes(range(251)) * ((2 * PART_SIZE + 12345) // 251))
    store.upload_file("i1/solver-grpo/model/shard.safetensors", big)
    copy = tmp_path / "copy"
    store.download_file("i1/solver-grpo/model/shard.safetensors", copy)
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_outage_mid_upload_waits_retries_and_shows_nothing_half_done(
    minio_server: Any, tmp_path: Path
) -> None:
    store = _s3(minio_server, tmp_path, retry_seconds=120)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for index in range(3):
        (checkpoint / f"part-{index}.bin").write_bytes(bytes([index]) * (PART_SIZE + 1000))
    output = StageOutput(store, "i1/coder-grpo", "i1-coder-grpo")
    output.put_file("model/part-0.bin", checkpoint / "part-0.bin")
    minio_server.stop()  # the store goes away between two files of one checkpoint
    failures: list[BaseException] = []

    def upload_rest() -> None:
        try:
            output.put_file("model/part-1.bin", checkpoint / "part-1.bin")
            output.put_file("model/part-2.bin", checkpoint / "part-2.bin")
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    uploader = threading.Thread(target=upload_rest)
    uploader.start()
    time.sleep(3)
    assert uploader.is_alive(), "the upload gave up instead of waiting for the store"
    minio_server.start()
    assert read_manifest(store, "i1/coder-grpo") is None  # not visible as done mid-upload
    uploader.join(timeout=120)
    assert not uploader.is_alive() and not failures, failures
    output.commit()
    manifest = verify(store, "i1/coder-grpo")
    assert sorted(manifest.files) == [f"model/part-{i}.bin" for i in range(3)]


def test_a_dead_store_fails_after_its_retry_window_naming_the_endpoint(tmp_path: Path) -> None:
    store = S3Store(
        "s3://bucket/runs/demo",
        endpoint="http://127.0.0.1:9",  # discard port: nothing listens
        access_key="id",
        secret_key="very-secret-value",
        root=tmp_path,
        retry_seconds=2,
    )
    with pytest.raises(StoreError) as error:
        store.write_bytes("i1/x", b"x")
    message = str(error.value)
    assert "127.0.0.1:9" in message and "failed for 2 s" in message
    assert "finished stages are kept" in message
    assert "very-secret-value" not in message + repr(store)


def test_wrong_credentials_and_a_missing_bucket_say_what_to_fix(
    minio_server: Any, tmp_path: Path
) -> None:
    wrong = S3Store(
        "s3://anything/runs",
        endpoint=minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key="not-the-secret",
        root=tmp_path,
    )
    with pytest.raises(StoreError, match=r"SignatureDoesNotMatch.*check AWS_SECRET_ACCESS_KEY"):
        wrong.write_bytes("x", b"x")
    missing = _s3(minio_server, tmp_path, bucket="no-such-bucket")
    with pytest.raises(StoreError, match=r"NoSuchBucket.*create bucket 'no-such-bucket'"):
        missing.write_bytes("x", b"x")


def test_credentials_come_from_the_environment_or_the_error_names_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StoreError, match=r"set spec\.storage\.endpoint or AWS_ENDPOINT_URL"):
        S3Store.from_environment("s3://b/p", root=tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(StoreError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        S3Store.from_environment("s3://b/p", root=tmp_path)
