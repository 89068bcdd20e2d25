"""One role's GRPO trainer: policy, frozen reference, AdamW, micro-batched updates, checkpoints.

`step(rollouts)` is one GRPO step as the reference runs it (§7.1, ppo_epochs 1): advantages per
group; reference log-probs, and old (pre-step policy) log-probs of the updates after the first,
in micro-batches of `micro_batch_size_experience`; then rollout/global optimizer updates, each
accumulating micro-batches of `micro_batch_size` with the loss normalised by that update's
token count, so accumulation equals one big batch (rl-anchors §2.3). `request_stop()` ends a
step after the current update; the shortened step still counts, so a checkpoint taken then
resumes exactly.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from mmzero_runtime.models.errors import ModelError
from mmzero_runtime.models.loading import default_dtype, load_vlm
from mmzero_runtime.spec import GRPOSpec, ImageSpec
from mmzero_runtime.training import checkpoint as ckpt
from mmzero_runtime.training.advantages import Advantages, group_advantages
from mmzero_runtime.training.batch import (
    Prompt,
    Rollout,
    SequenceBatch,
    check_rollouts,
    collate,
    encode_prompts,
    pad_rows,
    plan_updates,
    shard,
)
from mmzero_runtime.training.engine import Backend, default_backend, make_engine
from mmzero_runtime.training.errors import CheckpointError, TrainingError
from mmzero_runtime.training.logprobs import response_logprobs
from mmzero_runtime.training.loss import grpo_loss
from mmzero_runtime.training.stats import Tally

log = logging.getLogger(__name__)


@dataclass
class _StepData:
    """The sequences of one step, indexed like its rollouts."""

    rollouts: Sequence[Rollout]
    prompts: list[Prompt]
    responses: list[torch.Tensor]  # (R_i,) each
    advantages: torch.Tensor  # (N,)
    old: dict[int, torch.Tensor]  # (R_i,) old log-probs of this rank's sequences
    ref: dict[int, torch.Tensor]  # (R_i,) reference log-probs (empty without KL)


class GRPOTrainer:
    """GRPO for one role: see the module docstring. Build with `from_pretrained` or `resume`."""

    def __init__(
        self,
        policy: PreTrainedModel,
        processor: Any,
        spec: GRPOSpec,
        image_spec: ImageSpec,
        *,
        reference: PreTrainedModel | None = None,
        reference_source: Path | None = None,
        device: str | torch.device | None = None,
        backend: Backend | None = None,
    ) -> None:
        if spec.temperature <= 0:
            raise TrainingError("temperature 0 is greedy decoding; GRPO needs sampled rollouts")
        if spec.kl_coef > 0 and reference is None:
            raise TrainingError("kl_coef > 0 needs a reference model; use from_pretrained")
        self.spec, self.image_spec, self.processor = spec, image_spec, processor
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if spec.freeze_vision_tower:
            policy.get_encoder(modality="image").requires_grad_(False)
        if spec.gradient_checkpointing:
            with warnings.catch_warnings():  # renamed in transformers 5.2x; works from 4.57
                warnings.simplefilter("ignore", FutureWarning)
                policy.gradient_checkpointing_enable(  # type: ignore[no-untyped-call]
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
        self.reference = None if spec.kl_coef == 0 else reference
        self.reference_source = reference_source
        self.reference_fingerprint: str | None = None
        if self.reference is not None:
            nn.Module.to(self.reference, self.device).train(False).requires_grad_(False)
            self.reference_fingerprint = ckpt.fingerprint(self.reference)
        # Videos are never passed, so only a sampled image placeholder breaks the forward pass.
        self.vision_ids: set[int] = {policy.config.image_token_id}
        self.pad_id = int(processor.tokenizer.pad_token_id)
        self.engine = make_engine(backend or default_backend(), policy, spec, self.device)
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self._stop = False

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        spec: GRPOSpec,
        image_spec: ImageSpec,
        *,
        device: str | torch.device | None = None,
        backend: Backend | None = None,
    ) -> GRPOTrainer:
        """Policy (fp32 weights) and, when kl_coef > 0, a frozen copy as the reference."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        loaded = load_vlm(model, image_spec=image_spec, dtype=torch.float32, device=device)
        reference = None
        if spec.kl_coef > 0:
            reference = load_vlm(loaded.path, image_spec=image_spec, dtype=default_dtype(device))
        return cls(
            loaded.model,
            loaded.processor,
            spec,
            image_spec,
            reference=None if reference is None else reference.model,
            reference_source=loaded.path.resolve(),
            device=device,
            backend=backend,
        )

    @property
    def model(self) -> PreTrainedModel:
        """The policy being trained (for rollout between steps)."""
        return self.engine.model

    def request_stop(self) -> None:
        """Ask a running `step` to return after its current update (e.g. on SIGTERM)."""
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        """Whether `request_stop` was called."""
        return self._stop

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _batch(self, data: _StepData, rows: Sequence[int]) -> SequenceBatch:
        prompts = [data.prompts[i] for i in rows]
        batch = collate(prompts, [data.responses[i] for i in rows], pad_id=self.pad_id)
        return batch.to(self.device)

    def _prepare(
        self, rollouts: Sequence[Rollout]
    ) -> tuple[_StepData, Advantages, list[list[int]]]:
        """Advantages, encoded prompts and the update plan of a step's rollouts."""
        check_rollouts(rollouts, self.vision_ids, self.step_count + 1)
        spec = self.spec
        advantages = group_advantages(
            [r.reward for r in rollouts],
            [r.group_id for r in rollouts],
            eps=spec.advantage_eps,
            zero_variance=spec.zero_variance_groups,
        )
        encoded = encode_prompts(
            self.processor,
            rollouts,
            image_spec=self.image_spec,
            max_prompt_tokens=spec.max_prompt_tokens,
        )
        data = _StepData(
            rollouts=rollouts,
            prompts=[encoded[r.group_id] for r in rollouts],
            responses=[torch.tensor(r.response_ids, dtype=torch.long) for r in rollouts],
            advantages=advantages.values.to(self.device),
            old={},
            ref={},
        )
        plan = plan_updates(
            [r.group_id for r in rollouts],
            advantages.included.tolist(),
            spec.rollout_batch_size // spec.global_batch_size,
        )
        return data, advantages, plan

    def step(self, rollouts: Sequence[Rollout]) -> dict[str, float]:
        """One GRPO step on `rollouts` (all of one step); returns its stats."""
        started = time.perf_counter()
        data, advantages, plan = self._prepare(rollouts)
        self._experience(data, plan)
        experience_done = time.perf_counter()
        tally, updates = Tally(), 0
        for indices in plan:
            if self._stop:
                break
            self._update(data, indices, updates == 0, tally)
            updates += 1
        tally = tally.reduced(self.engine.all_reduce, self.device)
        completed = updates > 0 or not plan  # no plan: every group was dropped, nothing to do
        if completed:
            self.step_count += 1
        stats = tally.summary(updates)
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float64)
        finished = time.perf_counter()
        stats |= {
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "groups/total": float(advantages.groups),
            "groups/zero_variance": float(advantages.zero_variance_groups),
            "groups/zero_variance_share": advantages.zero_variance_groups / advantages.groups,
            "step/index": float(self.step_count),
            "step/updates": float(updates),
            "step/interrupted": float(updates < len(plan)),
            "time/experience_seconds": experience_done - started,
            "time/update_seconds": finished - experience_done,
            "time/step_seconds": finished - started,
        }
        stats["throughput/tokens_per_second"] = stats["tokens/total"] / stats["time/step_seconds"]
        if completed:
            self.history.append(stats)
        return stats

    def _experience(self, data: _StepData, plan: list[list[int]]) -> None:
        """Reference log-probs of this rank's sequences, and old log-probs of those trained after
        the first update. The first update's old log-probs are its own forward pass, detached:
        the policy has not moved yet, so the ratio is 1 exactly as a separate pass would give."""
        if self.reference is not None:
            self._no_grad_pass(self.reference, data, plan, data.ref)
        if len(plan) > 1:
            self._no_grad_pass(self.engine.model, data, plan[1:], data.old)

    def _no_grad_pass(
        self,
        model: PreTrainedModel,
        data: _StepData,
        plan: list[list[int]],
        into: dict[int, torch.Tensor],
    ) -> None:
        """Log-probs of this rank's sequences of `plan` in experience micro-batches."""
        rank, world = self.engine.rank, self.engine.world_size
        mine = [i for indices in plan for i in indices[rank::world]]
        longest = max(sum(len(u[r::world]) for u in plan) for r in range(world))
        size = self.spec.micro_batch_size_experience
        model.train(False)
        with torch.no_grad(), self._autocast():
            for k in range(math.ceil(longest / size)):
                rows = mine[k * size : (k + 1) * size]  # [] = an idle pass, so ZeRO-3 ranks
                batch = self._batch(data, rows or plan[0][:1])  # run the same collectives
                logprobs, _ = response_logprobs(model, batch, temperature=self.spec.temperature)
                for row, index in enumerate(rows):
                    into[index] = logprobs[row, : data.responses[index].numel()]

    def _update(self, data: _StepData, indices: list[int], first: bool, tally: Tally) -> None:
        """One optimizer update over `indices`, accumulating micro-batches."""
        engine, spec = self.engine, self.spec
        total_tokens = sum(data.responses[i].numel() for i in indices)
        prompt_tokens = sum(data.prompts[i].input_ids.numel() for i in indices)
        tally.add_shared("tokens/response", float(total_tokens))
        tally.add_shared("tokens/total", float(prompt_tokens + total_tokens))
        tally.add_shared("tokens/sequences", float(len(indices)))
        micro_batches = shard(indices, spec.micro_batch_size, engine.rank, engine.world_size)
        engine.model.train()
        for k, rows in enumerate(micro_batches):
            batch = self._batch(data, rows or indices[:1])
            with self._autocast():
                logprobs, entropy = response_logprobs(
                    engine.model, batch, temperature=spec.temperature, with_entropy=True
                )
            mask = batch.response_mask if rows else torch.zeros_like(batch.response_mask)
            old = logprobs.detach() if first else pad_rows([data.old[i] for i in rows], logprobs)
            ref = pad_rows([data.ref[i] for i in rows], logprobs) if data.ref else None
            loss, stats = grpo_loss(
                logprobs,
                old,
                ref,
                data.advantages[rows or indices[:1]].unsqueeze(-1),
                mask,
                spec=spec,
                total_tokens=float(total_tokens),
                total_sequences=len(indices),
            )
            engine.backward(loss, last=k == len(micro_batches) - 1)
            tally.add_micro_batch(stats, float(mask.sum()))
            assert entropy is not None
            tally.add_mean("entropy/mean", entropy, mask)
            self._rollout_gap(data, rows, old, tally)
        tally.add_update(engine.step())

    def _rollout_gap(
        self, data: _StepData, rows: list[int], old: torch.Tensor, tally: Tally
    ) -> None:
        """Mean |log-prob here - log-prob the sampler reported| (stale rollout weights guard)."""
        for row, index in enumerate(rows):
            sampled = data.rollouts[index].logprobs
            length = data.responses[index].numel()
            if sampled is not None and len(sampled) == length:
                reported = torch.tensor(sampled, dtype=old.dtype, device=old.device)
                gap = (old[row, :length] - reported).abs()
                tally.add_mean("logprob/rollout_abs_diff_mean", gap.unsqueeze(0), None)

    def save(self, directory: str | Path) -> None:
        """Write a checkpoint (model, processor, optimizer, RNG, step, stats) atomically."""
        directory = Path(directory)
        rank = self.engine.rank
        partial = directory.parent / f".{directory.name}.partial"
        try:
            if rank == 0:
                partial = ckpt.prepare_partial(directory)
            self.engine.barrier()
            self.engine.save(partial)
            torch.save(ckpt.capture_rng(), partial / ckpt.rng_file(rank))
            self.engine.barrier()
            if rank == 0:
                self.processor.save_pretrained(partial)
                ckpt.write_state(partial, self._state())
                ckpt.commit_partial(partial, directory)
        except Exception as error:  # torch, safetensors and the OS each raise their own type
            full = ckpt.discard_partial(partial, directory, error)
            if full is not None:
                raise full from error
            raise
        self.engine.barrier()
        log.info("saved checkpoint dir=%s step=%d", directory, self.step_count)

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "history": self.history,
            "spec": self.spec.model_dump(mode="json"),
            "world_size": self.engine.world_size,
            "reference": {
                "source": None if self.reference_source is None else str(self.reference_source),
                "fingerprint": self.reference_fingerprint,
            },
        }

    @classmethod
    def resume(
        cls,
        directory: str | Path,
        spec: GRPOSpec,
        image_spec: ImageSpec,
        *,
        reference: str | Path | None = None,
        device: str | torch.device | None = None,
        backend: Backend | None = None,
    ) -> GRPOTrainer:
        """The trainer as it was when `directory` was saved; `reference` overrides the
        recorded reference model directory (the role's initial weights)."""
        directory = Path(directory)
        state = ckpt.read_state(directory)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        source = reference or state["reference"]["source"]
        try:
            loaded = load_vlm(directory, image_spec=image_spec, dtype=torch.float32, device=device)
            frozen = None
            if spec.kl_coef > 0:
                if source is None:
                    raise CheckpointError(
                        f"{directory}: no reference model recorded; pass reference= (the role's "
                        "initial weights)"
                    )
                frozen = load_vlm(source, image_spec=image_spec, dtype=default_dtype(device)).model
        except ModelError as error:
            raise CheckpointError(f"{directory}: cannot load the checkpoint: {error}") from error
        trainer = cls(
            loaded.model,
            loaded.processor,
            spec,
            image_spec,
            reference=frozen,
            reference_source=None if source is None else Path(source),
            device=device,
            backend=backend,
        )
        trainer._restore(directory, state)
        return trainer

    def _restore(self, directory: Path, state: dict[str, Any]) -> None:
        ckpt.check_compatible(
            directory,
            state,
            reference_fingerprint=self.reference_fingerprint,
            reference_source=self.reference_source,
            world_size=self.engine.world_size,
        )
        try:
            self.engine.load(directory)
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(
                f"{directory}: optimizer state does not match the model ({error}); the "
                "checkpoint belongs to another model or freeze setting"
            ) from error
        ckpt.restore_rng(ckpt.load_tensors(directory / ckpt.rng_file(self.engine.rank)))
        self.step_count = int(state["step"])
        self.history = list(state["history"])
        if state["spec"] != self.spec.model_dump(mode="json"):
            log.warning("resuming dir=%s with GRPO settings that differ from saved", directory)
