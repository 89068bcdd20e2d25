"""Where gradients meet the optimizer: plain torch AdamW, or DeepSpeed ZeRO when it is installed.

Both engines take the micro-batch losses of one update (already normalised by the global batch,
so they are summed, never averaged), clip the gradient norm and step AdamW (§7.1: lr, betas
(0.9, 0.999), weight decay, max grad norm). An update whose gradient norm is not finite is
skipped, as EasyR1 does. The DeepSpeed engine is the GPU path (bf16, fused AdamW); on a CPU it
runs in fp32 with torch's AdamW, which is how CI checks it against the torch engine. One
difference remains: a parameter with no gradient in an update (the vision tower when the
update holds no image) is skipped by the torch engine and stepped on its Adam momentum by
ZeRO, as by FSDP in the reference.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from mmzero_runtime.spec import GRPOSpec
from mmzero_runtime.training.checkpoint import OPTIMIZER_FILE, load_tensors

Backend = Literal["torch", "deepspeed"]
BETAS = (0.9, 0.999)
"""AdamW betas (§7.1)."""
ZERO_STAGE = 3
"""ZeRO stage of the DeepSpeed engine: shard parameters, gradients and optimizer state."""


def default_backend() -> Backend:
    """`deepspeed` when a launcher started several processes (the torch engine is one
    process), or started this one on a GPU (it sets LOCAL_RANK) and the package imports;
    else `torch`."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "deepspeed"
    if not torch.cuda.is_available() or "LOCAL_RANK" not in os.environ:
        return "torch"
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return "torch"
    return "deepspeed"


class TorchEngine:
    """One process, plain `torch.optim.AdamW` over the trainable parameters."""

    rank = 0
    world_size = 1

    def __init__(self, model: PreTrainedModel, spec: GRPOSpec, device: torch.device) -> None:
        self.model = nn.Module.to(model, device)
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.max_grad_norm = spec.max_grad_norm
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=spec.learning_rate, betas=BETAS, weight_decay=spec.weight_decay
        )

    def backward(self, loss: torch.Tensor, *, last: bool) -> None:
        """Accumulate the gradient of one micro-batch's loss."""
        torch.autograd.backward(loss)

    def step(self) -> float:
        """Clip, step unless the norm is not finite, clear gradients; return the norm."""
        norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm))
        if math.isfinite(norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over processes (one process: unchanged)."""
        return values

    def barrier(self) -> None:
        """Wait for every process (one process: nothing to wait for)."""

    def generation_weights(self) -> contextlib.AbstractContextManager[Any]:
        """The full weights for sampling alone (one process holds them already)."""
        return contextlib.nullcontext()

    def save(self, directory: Path) -> None:
        """Write the HF model and the optimizer state into `directory`."""
        self.model.save_pretrained(directory, safe_serialization=True)
        torch.save(self.optimizer.state_dict(), directory / OPTIMIZER_FILE)

    def load(self, directory: Path) -> None:
        """Restore the optimizer state (the model was loaded from `directory` already)."""
        self.optimizer.load_state_dict(load_tensors(directory / OPTIMIZER_FILE))


class DeepSpeedEngine:
    """DeepSpeed ZeRO-3 data parallelism; every rank receives the same rollouts (GPU path).

    The model is sharded by `deepspeed.initialize`; loss scaling by gradient-accumulation steps
    is off (our losses are normalised by the global token count already) and the loss is
    multiplied by the world size, because DeepSpeed averages gradients over ranks.
    """

    def __init__(self, model: PreTrainedModel, spec: GRPOSpec, device: torch.device) -> None:
        import deepspeed  # placement is DeepSpeed's: the model stays where it was loaded

        gpu = device.type == "cuda"
        config: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": spec.micro_batch_size,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": spec.max_grad_norm,
            "bf16": {"enabled": gpu},  # a CPU keeps fp32: bf16 there is slow and inexact
            "zero_optimization": {"stage": ZERO_STAGE, "overlap_comm": gpu},
            "optimizer": {
                "type": "AdamW",
                "params": {
                    "lr": spec.learning_rate,
                    "betas": list(BETAS),
                    "eps": 1e-8,
                    "weight_decay": spec.weight_decay,
                    "torch_adam": not gpu,  # no fused kernel to compile on a CPU
                },
            },
        }
        parameters = [p for p in model.parameters() if p.requires_grad]
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=parameters, config=config
        )
        self.model: PreTrainedModel = self.engine.module
        self.rank = torch.distributed.get_rank()
        self.world_size = torch.distributed.get_world_size()

    def backward(self, loss: torch.Tensor, *, last: bool) -> None:
        """Accumulate one micro-batch; gradients are reduced at the update's last one.

        The forward passes call the HF module, not the DeepSpeed engine, so what the engine's
        forward does first is done here: ZeRO-3 counts micro-batches there, and without the
        count each micro-batch's gradient replaced the previous one's instead of adding to it
        (caught by comparing with the torch engine on a CPU).
        """
        self.engine.optimizer.clear_backward_seen_flag()
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss * self.world_size, scale_wrt_gas=False)

    def step(self) -> float:
        """Clip and step (DeepSpeed skips non-finite updates itself); return the norm."""
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float("nan") if norm is None else float(norm)

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over ranks."""
        torch.distributed.all_reduce(values)
        return values

    def barrier(self) -> None:
        """Wait for every rank."""
        torch.distributed.barrier()

    def generation_weights(self) -> contextlib.AbstractContextManager[Any]:
        """Gather the ZeRO-3 shards into full weights on every rank (and lift the engine's
        hooks) for the rollout, so each rank samples its own slice without lockstep; the
        shards are restored on exit. Every rank must enter it together."""
        from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

        return unwrap_model_for_generation(self.engine)  # type: ignore[no-any-return]

    def save(self, directory: Path) -> None:
        """Rank 0 writes the gathered HF model; every rank writes its ZeRO shards."""
        import deepspeed

        parameters = list(self.model.parameters())
        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=None):
            if self.rank == 0:
                self.model.save_pretrained(directory, safe_serialization=True)
        self.engine.save_checkpoint(str(directory), tag="zero")
        if self.rank == 0:
            torch.save({"deepspeed": True}, directory / OPTIMIZER_FILE)  # completeness marker
        self.barrier()

    def load(self, directory: Path) -> None:
        """Restore model and optimizer shards."""
        self.engine.load_checkpoint(str(directory), tag="zero")


Engine = TorchEngine | DeepSpeedEngine


def make_engine(
    backend: Backend, model: PreTrainedModel, spec: GRPOSpec, device: torch.device
) -> Engine:
    """The engine for `backend`."""
    match backend:
        case "torch":
            return TorchEngine(model, spec, device)
        case "deepspeed":
            return DeepSpeedEngine(model, spec, device)
        case _:
            raise ValueError(f"backend: got {backend!r}; expected torch or deepspeed")
