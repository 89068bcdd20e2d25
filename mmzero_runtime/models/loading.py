"""Load a vision-language model and its processor from a local reference, never the network.

A reference is `builtin:tiny` (the warm-started tiny model in the cache, `mmzero init-tiny`),
a local directory, or a Hugging Face id already in the local cache. Every failure is a
`ModelError` that names the path and what to do: a missing directory, a text-only model, an
unsupported architecture, unreadable weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForImageTextToText, PretrainedConfig

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.models.processor import ImageOnlyQwenVLProcessor, load_processor
from mmzero_runtime.models.tiny_cache import TINY_REF, cached_tiny_dir
from mmzero_runtime.spec import ImageSpec, user_path

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
"""The Qwen-VL family: one `<|image_pad|>` per image, expanded by grid size (ARCHITECTURE)."""


@dataclass(frozen=True)
class LoadedVLM:
    """A loaded model, its processor (budget set) and the directory both came from."""

    model: Any
    """A transformers `*ForConditionalGeneration` model, in eval mode."""
    processor: ImageOnlyQwenVLProcessor
    path: Path


def _from_hub_cache(ref: str) -> Path:
    """The local snapshot of a Hugging Face id; nothing is downloaded."""
    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError) as error:
        raise ModelError(
            f"model {ref!r}: not a local directory and not in the Hugging Face cache "
            f"({type(error).__name__}); nothing is downloaded at run time, so copy the model "
            "into a local directory and pass its path, or use builtin:tiny"
        ) from error


def resolve_ref(ref: str | Path) -> Path:
    """The local directory a model reference names (see the module docstring)."""
    if str(ref) == TINY_REF:
        path = cached_tiny_dir()
        if path is None:
            raise ModelError(
                f"model {TINY_REF!r}: the tiny model has not been built yet; run "
                "`mmzero init-tiny` once (about 7 minutes on 2 CPU cores)"
            )
        return path
    path = user_path(str(ref))
    if path.is_dir():
        return path
    if isinstance(ref, str) and ref.count("/") == 1 and not path.is_absolute():
        return _from_hub_cache(ref)
    raise ModelError(
        f"model {str(ref)!r}: directory {path} does not exist; pass a local model directory "
        "(config.json, weights, tokenizer), a cached Hugging Face id, or builtin:tiny"
    )


def check_config(path: Path) -> PretrainedConfig:
    """The config, checked to be a supported vision-language model."""
    try:
        config: PretrainedConfig = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as error:  # a user's file read by transformers: any type, many lines
        detail = " ".join(str(error).split()).split(". ")[0]
        raise ModelError(
            f"model {path}: no readable config.json ({detail}); point at the directory that "
            "save_pretrained wrote"
        ) from None
    kind = config.model_type
    if kind in SUPPORTED_MODEL_TYPES:
        return config
    if "vision_config" not in config.to_dict():
        raise ModelError(
            f"model {path}: model_type {kind!r} is a text-only model; MM-Zero trains a "
            f"vision-language model, use one of {', '.join(SUPPORTED_MODEL_TYPES)} "
            "(or builtin:tiny)"
        )
    raise ModelError(
        f"model {path}: model_type {kind!r} is not supported; use one of "
        f"{', '.join(SUPPORTED_MODEL_TYPES)} (one <|image_pad|> per image)"
    )


def pick_device(requested: str) -> str:
    """The device to run on (`auto`: CUDA when there is one); on CPU, one torch thread, so
    results do not depend on the core count (and a 2-core machine is not oversubscribed by the
    render and grading workers)."""
    device = requested
    if requested == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    return device


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a CUDA device that supports it, fp32 otherwise (CPU bf16 is slow and lossy)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_vlm(
    ref: str | Path,
    *,
    image_spec: ImageSpec,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> LoadedVLM:
    """Load model and processor from `ref`, offline; the processor gets `image_spec`."""
    path = resolve_ref(ref)
    check_config(path)
    dtype = dtype or default_dtype(device)
    try:
        model: Any = AutoModelForImageTextToText.from_pretrained(
            path, dtype=dtype, local_files_only=True
        )
    except (OSError, SafetensorError, RuntimeError, ValueError) as error:
        raise ModelError(
            f"model {path}: the weights could not be loaded ({type(error).__name__}: "
            f"{str(error)[:200]}); the files are missing or corrupt, copy the model again "
            "or rebuild the tiny one with `mmzero init-tiny --force`"
        ) from error
    model.to(device).eval()
    log.info("loaded model path=%s dtype=%s device=%s", path, dtype, device)
    return LoadedVLM(model=model, processor=load_processor(path, image_spec), path=path)
