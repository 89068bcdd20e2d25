"""`load_vlm`: offline loading and the errors for missing, text-only and corrupt models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.models.loading import LoadedVLM, load_vlm, resolve_ref
from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.models.tiny_cache import CACHE_ENV, TINY_REF


def test_load_vlm_tiny_dir_fp32_on_cpu_with_budget(tiny_vlm: LoadedVLM) -> None:
    assert tiny_vlm.model.dtype == torch.float32
    assert not tiny_vlm.model.training
    size = tiny_vlm.processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (3136, 37632)


def test_load_vlm_missing_dir_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match="does not exist") as caught:
        load_vlm(missing, image_spec=TINY_IMAGE)
    assert str(missing) in str(caught.value)


def test_load_vlm_text_only_model_says_not_a_vlm(tmp_path: Path) -> None:
    config = Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="text-only"):
        load_vlm(tmp_path, image_spec=TINY_IMAGE)


def test_load_vlm_corrupt_safetensors_says_weights(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(tiny_vlm_dir, tmp_path / "broken"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated mid-header
    with pytest.raises(ModelError, match="weights could not be loaded") as caught:
        load_vlm(broken, image_spec=TINY_IMAGE)
    assert str(broken) in str(caught.value)


def test_load_vlm_missing_weights_says_weights(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(tiny_vlm_dir, tmp_path / "noweights"))
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="weights could not be loaded"):
        load_vlm(broken, image_spec=TINY_IMAGE)


def test_resolve_ref_uncached_hub_id_downloads_nothing() -> None:
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        resolve_ref("mmzero-tests/no-such-model")


def test_resolve_ref_builtin_tiny_unbuilt_says_init_tiny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="mmzero init-tiny"):
        resolve_ref(TINY_REF)
