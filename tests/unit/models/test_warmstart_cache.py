"""`init_tiny`'s cache: keyed by every input, published atomically, reused on the second call.

The expensive warm start is replaced by a stand-in here (the real one runs in the slow
integration test); what is tested is the directory protocol around it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mmzero_runtime.models import tiny_cache
from mmzero_runtime.models.tiny_cache import (
    RECORD_NAME,
    WarmStartConfig,
    cache_key,
    cached_tiny_dir,
)
from mmzero_runtime.warmstart import build
from mmzero_runtime.warmstart.build import init_tiny


class Boom(RuntimeError):
    pass


def _fake_warm_start(calls: list[Path]) -> Any:
    def fake(out_dir: Path, config: WarmStartConfig) -> dict[str, Any]:
        calls.append(out_dir)
        (out_dir / "model.safetensors").write_bytes(b"weights")
        return {"shares": {}}

    return fake


def test_cache_key_changes_with_any_setting() -> None:
    base = WarmStartConfig()
    assert cache_key(base) == cache_key(WarmStartConfig())
    for change in ({"seed": 1}, {"steps": base.steps + 1}, {"learning_rate": 1e-3}):
        assert cache_key(dataclasses.replace(base, **change)) != cache_key(base), change


def test_init_tiny_second_call_returns_cached_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(build, "warm_start", _fake_warm_start(calls))
    first = init_tiny(tmp_path)
    second = init_tiny(tmp_path)
    assert first == second == tmp_path / "tiny" / cache_key()
    assert len(calls) == 1
    assert (first / RECORD_NAME).is_file() and (first / "model.safetensors").is_file()
    assert cached_tiny_dir(tmp_path) == first


def test_init_tiny_force_rebuilds_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(build, "warm_start", _fake_warm_start(calls))
    first = init_tiny(tmp_path)
    assert init_tiny(tmp_path, force=True) == first
    assert len(calls) == 2
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no leftovers


def test_init_tiny_killed_build_leaves_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(out_dir: Path, config: WarmStartConfig) -> dict[str, Any]:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise Boom("killed mid-build")

    monkeypatch.setattr(build, "warm_start", dies)
    with pytest.raises(Boom):
        init_tiny(tmp_path)
    assert cached_tiny_dir(tmp_path) is None
    assert list((tmp_path / "tiny").iterdir()) == []


def test_tiny_cache_root_env_overrides_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tiny_cache.CACHE_ENV, str(tmp_path))
    assert tiny_cache.tiny_cache_root() == tmp_path / "tiny"


def test_init_tiny_removes_directory_of_killed_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a SIGKILLed build cannot clean up; its pid is in the directory name, and it is gone
    monkeypatch.setattr(build, "warm_start", _fake_warm_start([]))
    stale = tmp_path / "tiny" / ".abc.building-999999999-x"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    init_tiny(tmp_path)
    assert not stale.exists()
