"""The MMZeroRun spec: every parameter of a run, typed, defaulting to the reference code's values.

This module is the one source of truth. The CRD schema, the spec reference (docs/spec.md) and the
validation messages are generated from it. Section numbers (§) cite
`reference-mmzero.md`, our notes on the public reference code at commit 70592bc; where the paper
and the code disagree (§11) the code's value is the default and the paper's is a named option.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

API_GROUP = "mmzero.dev"
API_VERSION: Final = "mmzero.dev/v1alpha1"
KIND: Final = "MMZeroRun"

SEED_TOPICS: tuple[str, ...] = (
    "chart and graph understanding",
    "statistical and trend analysis",
    "mathematical and quantitative reasoning",
    "spatial and geometric reasoning",
    "logical and abstract reasoning",
    "diagram and structural comprehension",
    "visual text recognition and OCR",
    "basic shape and object perception",
)
"""The 8 broad topics of the reference seed parquet (§2.2): the only input of a run."""

CONTENT_TYPES: tuple[str, ...] = (
    "data_chart",
    "diagram",
    "geometry",
    "timeline",
    "map",
    "table",
    "other",
)
"""The Proposer's `<content_type>` vocabulary (§3.1); anything else is normalised to `other`."""

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

FormatCheck = Literal["reference", "strict"]
"""How the Solver's format term is checked; see `SolverRewardSpec.format_check`."""


MUTABLE_AFTER_START: Final = ("iterations", "suspend", "cluster", "health")
"""Spec fields a started run may change (both executors enforce it); the rest is the method."""


@dataclass(frozen=True)
class CelRule:
    """A rule that spans fields, for the CRD (`x-kubernetes-validations`): the API server
    refuses what the model's validator refuses, with the same field named."""

    rule: str
    """CEL over `self`, the object of the model that declares it."""
    message: str
    field: str
    """The field the message is about (the CRD's `fieldPath`, without the leading dot)."""


class SpecError(ValueError):
    """A run spec that cannot be used; the message lists every wrong field at once."""


class _Spec(BaseModel):
    """Base of every spec model: unknown keys are errors; attribute docstrings become schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _partial_sections_keep_their_defaults(cls, data: Any) -> Any:
        """A section given in part keeps the rest of *its own* defaults: `roles: {coder:
        {steps: 4}}` keeps the Coder's temperature 0.7, not a generic 1.0."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, info in cls.model_fields.items():
            given = data.get(name)
            if isinstance(given, dict) and info.default_factory is not None:
                default = info.default_factory()  # type: ignore[call-arg]
                if isinstance(default, BaseModel):
                    merged[name] = {**default.model_dump(), **given}
        return merged


class GRPOSpec(_Spec):
    """GRPO settings of one role (§7.1 common values, §7.2 per-role values)."""

    group_size: int = Field(4, ge=2, le=64)
    """Responses sampled per prompt (GRPO n), at least 2 because advantages are normalised within
    a group. Reference: Proposer 4, Coder 4, Solver 8."""

    rollout_batch_size: int = Field(18, ge=1)
    """Prompts per GRPO step. Reference: Proposer 18, Coder 320, Solver 512."""

    global_batch_size: int = Field(18, ge=1)
    """Prompts per optimizer update; a step makes rollout/global updates. Reference: Proposer 18,
    Coder 64, Solver 64."""

    micro_batch_size: int = Field(1, ge=1)
    """Sequences per forward/backward pass in the update; gradients are accumulated over the
    global batch. Reference: 1 for every role."""

    micro_batch_size_experience: int = Field(2, ge=1)
    """Sequences per forward pass when computing old and reference log-probs. Reference: 2
    (Proposer, Coder), 1 (Solver)."""

    steps: int = Field(20, ge=1)
    """GRPO steps per role per iteration. Reference code: 20; the paper's table says 10."""

    learning_rate: float = Field(1e-6, gt=0.0, le=1.0)
    """AdamW learning rate, constant, no warm-up (§7.1)."""

    weight_decay: float = Field(1e-2, ge=0.0)
    """AdamW weight decay (§7.1)."""

    max_grad_norm: float = Field(1.0, gt=0.0)
    """Gradient-norm clip applied to each update (§7.1)."""

    kl_coef: float = Field(1e-2, ge=0.0)
    """Weight of the KL loss term against the frozen reference model; 0 turns it off (§7.1)."""

    kl_type: Literal["low_var_kl", "kl", "mse", "abs"] = "low_var_kl"
    """KL estimator: `low_var_kl` (k3, clamped to [-10, 10], the reference's), `kl` (k1), `mse`
    (k2) or `abs`."""

    clip_ratio_low: float = Field(0.2, gt=0.0, lt=1.0)
    """PPO ratio clip below 1 (1 - low). Reference 0.2."""

    clip_ratio_high: float = Field(0.3, gt=0.0)
    """PPO ratio clip above 1 (1 + high), clip-higher. Reference 0.3."""

    clip_ratio_dual: float = Field(3.0, gt=1.0)
    """Dual-clip constant bounding the loss of negative-advantage tokens. Reference 3.0."""

    loss_aggregation: Literal["token_mean", "seq_mean_token_mean"] = "token_mean"
    """How token losses are averaged: over all tokens of the global batch (`token_mean`, the
    reference's) or per sequence first (`seq_mean_token_mean`, the original GRPO paper)."""

    advantage_eps: float = Field(1e-6, gt=0.0)
    """Added to the group's standard deviation before dividing (§7.1)."""

    zero_variance_groups: Literal["keep", "drop"] = "keep"
    """Groups whose rewards are all equal: `keep` them (their advantage is 0, as in the
    reference) or `drop` them from the loss. Either way they are counted in the metrics."""

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """Rollout sampling temperature. Reference: Proposer 1.0, Coder 0.7, Solver 1.0."""

    top_p: float = Field(0.99, gt=0.0, le=1.0)
    """Rollout nucleus sampling. Reference: Proposer 0.99, Coder 0.95, Solver 0.99."""

    max_prompt_tokens: int = Field(4096, ge=16)
    """Longest prompt, image tokens included; longer items are dropped and counted, never
    truncated. Reference: 4,096 (Solver 8,192)."""

    max_response_tokens: int = Field(4096, ge=1)
    """Longest sampled response. Reference: 4,096 (the paper's Proposer used 2,048)."""

    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass to save memory (§7.1: on)."""

    freeze_vision_tower: bool = False
    """Keep the vision encoder fixed. Reference: trainable (full fine-tune)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.global_batch_size <= self.rollout_batch_size",
            "global_batch_size must be <= rollout_batch_size: an update cannot use more "
            "prompts than a step samples",
            "global_batch_size",
        ),
        CelRule(
            "self.global_batch_size > self.rollout_batch_size || "
            "self.rollout_batch_size % self.global_batch_size == 0",
            "rollout_batch_size must be a multiple of global_batch_size: each step splits into "
            "whole updates",
            "rollout_batch_size",
        ),
        CelRule(
            "(self.global_batch_size * self.group_size) % self.micro_batch_size == 0",
            "micro_batch_size must divide global_batch_size x group_size",
            "micro_batch_size",
        ),
        CelRule(
            "(self.global_batch_size * self.group_size) % self.micro_batch_size_experience == 0",
            "micro_batch_size_experience must divide global_batch_size x group_size",
            "micro_batch_size_experience",
        ),
    )

    @model_validator(mode="after")
    def _check_batches(self) -> GRPOSpec:
        problems = []
        if self.global_batch_size > self.rollout_batch_size:
            problems.append(
                f"global_batch_size: got {self.global_batch_size}, larger than rollout_batch_size "
                f"{self.rollout_batch_size}; an update cannot use more prompts than a step samples,"
                " set global_batch_size <= rollout_batch_size"
            )
        elif self.rollout_batch_size % self.global_batch_size:
            problems.append(
                f"rollout_batch_size: got {self.rollout_batch_size}, not a multiple of "
                f"global_batch_size {self.global_batch_size}; each step must split into whole "
                "updates"
            )
        sequences = self.global_batch_size * self.group_size
        for name in ("micro_batch_size", "micro_batch_size_experience"):
            value = getattr(self, name)
            if sequences % value:
                problems.append(
                    f"{name}: got {value}, does not divide the {sequences} sequences of an update "
                    f"(global_batch_size x group_size); choose a divisor such as 1"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _proposer_grpo() -> GRPOSpec:
    return GRPOSpec(
        group_size=4,
        rollout_batch_size=18,
        global_batch_size=18,
        temperature=1.0,
        top_p=0.99,
        max_prompt_tokens=4096,
        max_response_tokens=4096,
    )


def _coder_grpo() -> GRPOSpec:
    return GRPOSpec(
        group_size=4,
        rollout_batch_size=320,
        global_batch_size=64,
        temperature=0.7,
        top_p=0.95,
        max_prompt_tokens=4096,
        max_response_tokens=4096,
    )


def _solver_grpo() -> GRPOSpec:
    return GRPOSpec(
        group_size=8,
        rollout_batch_size=512,
        global_batch_size=64,
        micro_batch_size_experience=1,
        temperature=1.0,
        top_p=0.99,
        max_prompt_tokens=8192,
        max_response_tokens=4096,
    )


class RolesSpec(_Spec):
    """GRPO settings per role."""

    proposer: GRPOSpec = Field(default_factory=_proposer_grpo)
    """Proposer GRPO (§7.2: n 4, batch 18/18, T 1.0, top-p 0.99)."""

    coder: GRPOSpec = Field(default_factory=_coder_grpo)
    """Coder GRPO (§7.2: n 4, batch 320/64, T 0.7, top-p 0.95)."""

    solver: GRPOSpec = Field(default_factory=_solver_grpo)
    """Solver GRPO (§7.2: n 8, batch 512/64, T 1.0, top-p 0.99, prompts up to 8,192 tokens)."""


class SamplingSpec(_Spec):
    """Sampling settings of a generation that is not a GRPO rollout."""

    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """Sampling temperature; 0 means greedy."""

    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling; 1.0 turns it off."""

    top_k: int = Field(0, ge=0)
    """Top-k sampling; 0 turns it off."""

    max_tokens: int = Field(4096, ge=1)
    """Longest response."""


class DataSpec(_Spec):
    """How much each data stage generates, and how (§2.4, §2.5, §8.1)."""

    topics: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: list(SEED_TOPICS), min_length=1, max_length=64
    )
    """Seed topic strings the Proposer is prompted with, cycled in order (§2.2). Replace them to
    steer what the run invents."""

    seed_rows_per_topic: int = Field(126, ge=1)
    """Rows per topic in the Proposer's seed set: 8 x 126 = 1,008 in the reference."""

    proposals_for_coder: int = Field(3304, ge=1)
    """Proposals the new Proposer writes for Coder training, before the render filter
    (413 per GPU x 8)."""

    proposals_for_solver: int = Field(5000, ge=1)
    """Proposals the new Proposer writes for Solver data, each drawn once by the new Coder
    (625 per GPU x 8)."""

    propose_sampling: SamplingSpec = Field(
        default_factory=lambda: SamplingSpec(temperature=1.0, top_p=0.95, max_tokens=4096)
    )
    """Sampling of offline proposals (§2.4 step 2: T 1.0, top-p 0.95)."""

    code_sampling: SamplingSpec = Field(
        default_factory=lambda: SamplingSpec(temperature=0.7, top_p=0.95, max_tokens=4096)
    )
    """Sampling of offline SVGs for the render filter and Solver data (T 0.7, top-p 0.95)."""

    coder_service_sampling: SamplingSpec = Field(
        default_factory=lambda: SamplingSpec(temperature=0.7, top_p=0.95, top_k=40, max_tokens=4096)
    )
    """Sampling of the frozen Coder inside the Proposer reward (§8.1: T 0.7, top-p 0.95,
    top-k 40)."""

    solver_service_sampling: SamplingSpec = Field(
        default_factory=lambda: SamplingSpec(temperature=1.0, top_p=1.0, top_k=40, max_tokens=4096)
    )
    """Sampling of the frozen Solver inside the Proposer and Coder rewards and for offline labels
    (§8.1, §2.5 step 4: T 1.0, top-p 1.0, top-k 40)."""


class ImageSpec(_Spec):
    """The one pixel budget: render output, training, serving and evaluation all use it (§13.14)."""

    min_pixels: int = Field(262_144, ge=784)
    """Smallest image area in pixels; smaller renders are scaled up. Reference training value
    512 x 512."""

    max_pixels: int = Field(4_194_304, ge=784)
    """Largest image area in pixels; larger renders are scaled down to fit instead of failing.
    Reference training value 2048 x 2048."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.min_pixels <= self.max_pixels", "min_pixels must be <= max_pixels", "min_pixels"
        ),
    )

    @model_validator(mode="after")
    def _check_range(self) -> ImageSpec:
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels: got {self.min_pixels}, larger than max_pixels {self.max_pixels}; "
                "set min_pixels <= max_pixels"
            )
        return self


class RenderSpec(_Spec):
    """Limits of the SVG sandbox (§4; the reference had only a 30 s alarm)."""

    timeout_seconds: float = Field(30.0, gt=0.0, le=600.0)
    """Wall-clock limit per SVG; the worker is killed and replaced when it is passed (§4: 30 s)."""

    cpu_seconds: int = Field(60, ge=1)
    """CPU-time limit (RLIMIT_CPU) per SVG, re-armed before each one; a worker that passes it is
    killed and replaced, and the SVG fails as a timeout."""

    memory_bytes: int = Field(1_073_741_824, ge=67_108_864)
    """Address-space limit (RLIMIT_AS) of a worker process."""

    max_svg_bytes: int = Field(1_048_576, ge=1024)
    """Largest SVG document accepted, in bytes; larger input is rejected before parsing."""

    max_aspect_ratio: float = Field(100.0, ge=1.0)
    """Renders whose long side exceeds this many times the short side are rejected (§4: 100)."""

    workers: int = Field(0, ge=0)
    """Worker processes in the pool; 0 means one per CPU core."""


class ProposerRewardSpec(_Spec):
    """Constants of the Proposer reward (§5.3)."""

    coder_samples: int = Field(4, ge=1)
    """N: SVGs the frozen Coder writes per proposal; failed renders count 0 in the 1/N mean."""

    solver_samples: int = Field(5, ge=1)
    """K: answers the frozen Solver gives per image and question."""

    solvability_cap: Probability = 0.5
    """tau_s: the easy-question solvability enters the reward as min(s, cap)."""

    easy_hard_threshold: Probability = 0.15
    """delta_eh: when the mean difficulty over a proposal's renders is below this, the hard
    question is too easy and the penalty applies."""

    easy_hard_penalty: float = Field(0.3, ge=0.0)
    """lambda_eh: the too-easy penalty."""

    content_type_weight: float = Field(0.15, ge=0.0)
    """lambda_ct: weight of the penalty on over-represented content types."""

    content_type_threshold: float = Field(0.5, ge=0.0, lt=1.0)
    """phi: the batch share above which a content type is penalised."""

    diversity_weight: float = Field(0.5, ge=0.0)
    """lambda_div: bound of the BLEU-cluster diversity term."""

    diversity_caption_weight: float = Field(0.45, ge=0.0)
    """w_c: weight of the caption clusters in the diversity term."""

    diversity_easy_question_weight: float = Field(0.20, ge=0.0)
    """w_e: weight of the easy-question clusters in the diversity term."""

    diversity_hard_question_weight: float = Field(0.35, ge=0.0)
    """w_h: weight of the hard-question clusters in the diversity term."""

    diversity_distance_threshold: float = Field(0.25, gt=0.0, le=1.0)
    """Agglomerative-clustering distance threshold on 1 - sentence-BLEU (average linkage)."""

    diversity_mode: Literal["penalty", "penalty_and_bonus"] = "penalty"
    """`penalty`: the reference code's term, in [-lambda_div, 0]. `penalty_and_bonus`: the
    paper's formula, where a proposal in a smaller-than-average cluster earns up to
    +lambda_div (§11)."""

    parse_failure_reward: float = -1.0
    """Reward of a response whose caption or easy/hard question/answer does not parse."""


class CoderRewardSpec(_Spec):
    """Constants of the Coder reward (§5.4)."""

    solver_samples: int = Field(5, ge=1)
    """K: answers the judging Solver gives per question on the rendered image."""

    no_render_penalty: float = Field(0.1, ge=0.0)
    """Penalty when the extracted SVG does not render."""

    syntax_error_penalty: float = Field(0.05, ge=0.0)
    """Extra penalty when no SVG could be extracted at all."""

    wrong_type_penalty: float = Field(0.5, ge=0.0)
    """Extra penalty when the output is not SVG markup."""

    floor: float = Field(-0.5, le=0.0)
    """Lowest Coder reward."""

    judge: Literal["previous_solver", "coder_checkpoint"] = "previous_solver"
    """Which frozen model answers questions on the Coder's renders. `previous_solver` (the
    method as described). `coder_checkpoint` reproduces the reference code, which launched its
    "Solver" service from the Coder's own starting checkpoint (§13.11)."""


class SolverRewardSpec(_Spec):
    """Solver reward and pseudo-labels (§5.5)."""

    format_weight: Probability = 0.1
    """Weight of the format term; accuracy gets 1 - format_weight (0.9)."""

    format_check: FormatCheck = "reference"
    """`reference`: the reference code's check (§5.5): after whitespace around `<`, `>` and `/`
    is removed, the whole reply matches `<think>.*</think>` then `\\boxed{.*}`, so a second think
    block, a second box or an empty box pass. `strict`: exactly one think block, then one
    non-empty box and nothing else. Used by Solver GRPO and the evaluation's format share."""

    labels: Literal["offline_majority", "online_majority"] = "offline_majority"
    """`offline_majority`: the label is the majority of `label_samples` answers of the previous
    Solver, computed before training (the reference code). `online_majority`: the label is the
    majority over each GRPO group's own rollouts (TTRL, as the paper describes)."""

    label_samples: int = Field(10, ge=1)
    """Answers per question the previous Solver gives to vote the offline label (§2.5: 10)."""


class RewardsSpec(_Spec):
    """Reward constants of the three roles."""

    proposer: ProposerRewardSpec = Field(default_factory=ProposerRewardSpec)
    """Proposer reward (§5.3)."""

    coder: CoderRewardSpec = Field(default_factory=CoderRewardSpec)
    """Coder reward (§5.4)."""

    solver: SolverRewardSpec = Field(default_factory=SolverRewardSpec)
    """Solver reward (§5.5)."""


class GradingSpec(_Spec):
    """How answers are compared (§5.1)."""

    grader: Literal["mathruler", "math_verify"] = "mathruler"
    """`mathruler` (the reference's grade_answer) or `math_verify` (needs the `math-verify`
    extra)."""

    timeout_seconds: float = Field(10.0, gt=0.0)
    """Hard wall-clock limit per comparison; the grading worker is killed past it (§5.2: 10 s)."""

    workers: int = Field(2, ge=1)
    """Grading worker processes."""

    max_failure_share: Probability = 0.2
    """A batch whose share of renders or gradings that failed for a reason other than a wrong
    answer (timeout, crash, rejected input) passes this fails the stage loudly instead of
    training on silent zeros."""


class FiltersSpec(_Spec):
    """Data filters between stages (§6)."""

    coder_render_samples: int = Field(4, ge=1)
    """SVGs the current Coder draws per proposal to measure its render rate."""

    coder_min_render_rate: Probability = 0.25
    """Proposals with a lower render rate are too hard to draw and dropped."""

    coder_max_render_rate: Probability = 0.75
    """Proposals with a higher render rate teach the Coder nothing and are dropped."""

    easy_filter: Literal["self_consistency", "accuracy"] = "self_consistency"
    """`self_consistency`: the reference code's easy test, the Solver's agreement with its own
    majority. `accuracy`: the paper's, the share of answers equal to the Proposer's easy answer."""

    min_easy_score: Probability = 0.5
    """Items whose easy score is below this are dropped (kept when equal, as the code does)."""

    min_hard_consistency: Probability = 0.25
    """Lower edge of the hard-question consistency band. Code 0.25; the paper says 0.27."""

    max_hard_consistency: Probability = 0.75
    """Upper edge of the hard-question consistency band."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.coder_min_render_rate <= self.coder_max_render_rate",
            "coder_min_render_rate must be <= coder_max_render_rate, or the band is empty",
            "coder_min_render_rate",
        ),
        CelRule(
            "self.min_hard_consistency <= self.max_hard_consistency",
            "min_hard_consistency must be <= max_hard_consistency, or the band is empty",
            "min_hard_consistency",
        ),
    )

    @model_validator(mode="after")
    def _check_bands(self) -> FiltersSpec:
        problems = []
        if self.coder_min_render_rate > self.coder_max_render_rate:
            problems.append(
                f"coder_min_render_rate: got {self.coder_min_render_rate}, above "
                f"coder_max_render_rate {self.coder_max_render_rate}; the band would be empty"
            )
        if self.min_hard_consistency > self.max_hard_consistency:
            problems.append(
                f"min_hard_consistency: got {self.min_hard_consistency}, above "
                f"max_hard_consistency {self.max_hard_consistency}; the band would be empty"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class BenchmarkSpec(_Spec):
    """A benchmark file the evaluation stage grades every iteration's Solver and the base model
    on. JSON Lines or Parquet (by extension), one row per question: `question`, `answer`,
    `image` (a path relative to the file, or the image's bytes, or `{bytes, path}` as Hugging
    Face datasets write it), optional `choices` (a list: multiple choice, `answer` is the
    letter or the text of the right choice) and optional `id`. docs/health.md, "Benchmarks"."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
    """Name of the benchmark in the results (`benchmarks/<name>/predictions.jsonl`)."""

    path: str = Field(min_length=1, max_length=1024)
    """The file: a path on the machine (or in the stage pod) running the evaluation, or
    `store:<key>` for a file in the run's artifact store."""

    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """Expected sha256 of the file; a different file is refused. Either way the file's sha256
    is recorded in the results."""

    limit: int | None = Field(None, ge=1)
    """Grade only the first `limit` rows."""


class JudgeSpec(_Spec):
    """An OpenAI-compatible model that judges free-form benchmark answers the grader marks
    wrong (a paraphrase, a unit written out). Off unless given; it is named and versioned in
    every result it touches."""

    url: str = Field(min_length=1, max_length=512)
    """Base URL of the server (`/v1/chat/completions` is appended), e.g. a `vllm serve`."""

    model: str = Field(min_length=1, max_length=256)
    """The served model name sent as `model` (and checked in every answer)."""

    version: str = Field(min_length=1, max_length=256)
    """What identifies the judge's weights (a revision, a digest); recorded in the results."""

    token_env: str = Field("MMZERO_JUDGE_TOKEN", min_length=1, max_length=128)
    """Environment variable holding the server's bearer token, if it needs one."""


class EvaluationSpec(_Spec):
    """The evaluation stage at the end of each iteration."""

    held_out_items: int = Field(64, ge=0)
    """Known-answer items made by the procedural generator, never seen in training."""

    sampling: SamplingSpec = Field(
        default_factory=lambda: SamplingSpec(temperature=0.6, top_p=0.95, max_tokens=4096)
    )
    """Sampling of the evaluated Solver (§9: T 0.6, top-p 0.95, 4,096 tokens)."""

    benchmarks: list[BenchmarkSpec] = Field(default_factory=list, max_length=32)
    """User-supplied benchmark files, graded by the training grader, raw predictions saved;
    the base model is measured on them in the same stage as the baseline."""

    judge: JudgeSpec | None = None
    """Optional judge of free-form benchmark answers; none by default (no network)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.benchmarks.all(b, self.benchmarks.filter(c, c.name == b.name).size() == 1)",
            "benchmark names must be unique",
            "benchmarks",
        ),
    )

    @model_validator(mode="after")
    def _check_names(self) -> EvaluationSpec:
        names = [b.name for b in self.benchmarks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"benchmarks: the name(s) {twice} appear more than once; rename")
        return self


class HealthSpec(_Spec):
    """Self-play health: known-answer probes and alarms on the health figures of each stage.

    Every stage stores its health figures (`health.json`); the alarms are evaluated from them
    and these thresholds by both executors, so raising a threshold or switching `on_alarm` to
    `warn` lets a stopped run go on. It may change after a run has started."""

    probe_items: int = Field(64, ge=0)
    """Known-answer items per iteration (procedural charts), labelled by the Solver-data stage
    exactly as generated items are; their labels against the truth give the pseudo-label
    accuracy. Never trained on. 0: no probes."""

    diversity_sample: int = Field(256, ge=2)
    """Proposals of the propose stage whose captions and questions are clustered for the
    diversity figures (the first ones by id; clustering is quadratic in this)."""

    on_alarm: Literal["warn", "stop"] = "warn"
    """What a firing alarm does: `warn` (a run condition, a log line and a report line) or
    `stop` (also: no further stage starts until the alarm is cleared)."""

    min_distinct_share: Probability = 0.2
    """Collapse alarm: fires when the distinct clusters among the proposals' captions, easy or
    hard questions fall below this share of the proposals."""

    max_zero_variance_share: Probability = 0.8
    """All-same alarm: fires when more than this share of a GRPO stage's groups had identical
    rewards (they teach nothing)."""

    min_probe_label_accuracy: Probability = 0.3
    """Label alarm: fires when the majority-vote labels of the probes are right less often."""

    max_render_failure_share: Probability = 0.9
    """Failure alarm: fires when more than this share of a data stage's drawings do not
    render."""


class PodResourcesSpec(_Spec):
    """Compute asked for by one kind of pod."""

    gpus: int = Field(0, ge=0)
    """`nvidia.com/gpu` per pod."""

    cpu: str = Field("4", min_length=1, max_length=32)
    """CPU request and limit, in Kubernetes quantity syntax."""

    memory: str = Field("32Gi", min_length=1, max_length=32)
    """Memory request and limit, in Kubernetes quantity syntax."""

    replicas: int = Field(1, ge=1)
    """Pods of this kind: nodes of a trainer, servers of a frozen role, shards of a batch stage."""


class ResourcesSpec(_Spec):
    """Compute per stage kind; defaults follow the reference's one-node, 8-GPU layout (§8.1)."""

    gpu_memory_gib: float = Field(80.0, gt=0.0)
    """Memory of one GPU. `mmzero plan` refuses a spec whose estimated memory per GPU exceeds
    it. Reference hardware: 80 GB GPUs."""

    proposer_trainer: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=3, cpu="24", memory="256Gi")
    )
    """Proposer GRPO trainer (reference: GPUs 0-2)."""

    coder_trainer: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=4, cpu="32", memory="320Gi")
    )
    """Coder GRPO trainer (reference: GPUs 0-3)."""

    solver_trainer: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=8, cpu="64", memory="640Gi")
    )
    """Solver GRPO trainer (reference: all 8 GPUs)."""

    coder_server: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=1, cpu="8", memory="64Gi", replicas=2)
    )
    """Frozen Coder servers during Proposer GRPO (reference: 2, on GPUs 3-4)."""

    solver_server: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=1, cpu="8", memory="64Gi", replicas=3)
    )
    """Frozen Solver servers during Proposer GRPO (reference: 3, on GPUs 5-7)."""

    judge_server: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=1, cpu="8", memory="64Gi", replicas=4)
    )
    """Frozen servers of the model that judges the Coder during Coder GRPO (reference: 4, on
    GPUs 4-7)."""

    generation: PodResourcesSpec = Field(
        default_factory=lambda: PodResourcesSpec(gpus=1, cpu="8", memory="64Gi", replicas=8)
    )
    """Batch generation and labelling shards (reference: one process per GPU, 8)."""


class StorageSpec(_Spec):
    """Where artifacts (data, checkpoints, manifests) live."""

    uri: str = Field("runs", min_length=1, max_length=1024)
    """A local directory (relative to the current directory) or `s3://bucket/prefix`."""

    endpoint: str | None = Field(None, max_length=512)
    """S3 endpoint URL for an `s3://` uri, e.g. `http://minio.mmzero:9000`; None takes
    `AWS_ENDPOINT_URL` from the environment."""

    credentials_secret: str | None = Field(None, max_length=253)
    """Name of the Secret holding S3 credentials on a cluster (keys `AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY`, passed to stage pods as environment); None for a local directory."""

    retry_seconds: int = Field(300, ge=0, le=86400)
    """How long a stage retries an S3 store that does not answer (with backoff) before it
    stops with an error; finished stages are kept either way."""

    keep_checkpoints: int = Field(0, ge=0)
    """Models kept per role: every GRPO stage publishes one per iteration, and the older ones
    beyond the newest N are removed once no stage still to run reads them (the base model is
    always kept); 0 keeps all. `mmzero export` names the iterations still kept."""


class ClusterSpec(_Spec):
    """How the operator runs the stages on Kubernetes; ignored by the local executor. Unlike the
    method, these may change after a run has started (a new image fixes a bug mid-run)."""

    image: str = Field("mmzero/runtime:0.1.0", min_length=1, max_length=512)
    """Container image of every stage pod (`images/runtime`): mmzero with torch, and vLLM and
    DeepSpeed on GPU nodes."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Kubernetes image pull policy of the stage pods."""

    service_account: str | None = Field(None, max_length=253)
    """ServiceAccount of the stage pods; None uses the namespace's default. Stage pods need no
    API access: the account matters only for image pull secrets and cloud identity."""

    queue: str | None = Field(None, max_length=63)
    """Kueue LocalQueue name. When set, stage Jobs are created suspended with the
    `kueue.x-k8s.io/queue-name` label, and start when Kueue admits them (all pods at once)."""

    priority_class: str | None = Field(None, max_length=253)
    """PriorityClass of the stage pods."""

    node_selector: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Node labels every stage pod requires (e.g. a GPU product label)."""

    pod_annotations: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Annotations added to every stage pod (e.g. for a service mesh or a test harness)."""

    storage_claim: str | None = Field(None, max_length=253)
    """PersistentVolumeClaim (ReadWriteMany) that holds a local-directory artifact store on a
    cluster, mounted at /var/lib/mmzero in stage pods; `storage.uri` is a path inside it. None
    when `storage.uri` is `s3://...`."""

    pod_retries: int = Field(2, ge=0, le=20)
    """Pod restarts inside one stage attempt (the Job's backoffLimit) for failures that may
    pass on another try (node loss, OOM with a changed layout); exit status 2 (a usage or
    spec error) fails the attempt at once."""

    stage_attempts: int = Field(3, ge=1, le=20)
    """Attempts per stage before the run fails; each attempt is a new Job named `-a<N>`,
    started after an exponential backoff, and resumes from the stage's last checkpoint."""

    retry_backoff_seconds: int = Field(30, ge=1, le=3600)
    """Backoff before the second attempt; doubled for each further one, up to 30 minutes."""

    stage_deadline_seconds: int = Field(172_800, ge=60)
    """Wall-clock limit of one stage attempt (the Job's activeDeadlineSeconds): 48 hours."""

    pending_deadline_seconds: int = Field(1800, ge=10)
    """How long a stage pod may stay unscheduled or unable to pull its image before the run
    fails with that reason (an image that does not exist never will)."""

    manifest_grace_seconds: int = Field(60, ge=0, le=3600)
    """How long a Job that succeeded may wait for its stage manifest to be visible in the
    store before the attempt counts as failed (a stage that exits 0 without a manifest)."""

    metrics_linger_seconds: int = Field(30, ge=0, le=600)
    """How long a finished stage pod keeps serving its final metrics: one scrape interval of
    your Prometheus (the chart's is 30 s); 0 when nothing scrapes stage pods."""

    server_backend: Literal["mmzero", "vllm"] = "mmzero"
    """What serves the frozen roles while a GRPO stage runs: `mmzero serve` (transformers; any
    node) or `vllm serve` from the runtime image's vLLM environment (GPU servers), on the same
    checkpoint exported by an init container and named by its digest, so the stages' client
    and its checks are the same."""

    delete_artifacts: bool = False
    """Deleting the MMZeroRun also deletes its artifacts from the store (checkpoints, data,
    report) once its pods have stopped. Off: a deleted run's store data stays, so deleting a
    run never loses trained checkpoints."""


class RunSpec(_Spec):
    """Everything a run needs. `RunSpec()` equals the reference code's values (§12)."""

    model: str = Field("Qwen/Qwen3-VL-8B-Instruct", min_length=1, max_length=1024)
    """Base VLM every role starts from: a local directory, an artifact-store key, `builtin:tiny`
    (the offline model `mmzero init-tiny` builds) or a Hugging Face id already in the local cache
    (nothing is downloaded). Reference: Qwen3-VL-8B-Instruct."""

    iterations: int = Field(12, ge=1, le=100)
    """Self-evolution iterations (Proposer, Coder, Solver each trained once per iteration). The
    reference script loops to 12; the paper reports 3 to 5."""

    seed: int = Field(1, ge=0)
    """Run seed; every random choice is seeded from (seed, iteration, stage, item)."""

    suspend: bool = False
    """Pause the run: no new stage starts and running ones are stopped at a checkpoint; false
    resumes. Like `iterations`, it may change after a run has started."""

    roles: RolesSpec = Field(default_factory=RolesSpec)
    """GRPO settings per role."""

    data: DataSpec = Field(default_factory=DataSpec)
    """Seed topics and data-generation sizes."""

    rewards: RewardsSpec = Field(default_factory=RewardsSpec)
    """Reward constants."""

    filters: FiltersSpec = Field(default_factory=FiltersSpec)
    """Between-stage data filters."""

    grading: GradingSpec = Field(default_factory=GradingSpec)
    """Answer comparison."""

    image: ImageSpec = Field(default_factory=ImageSpec)
    """The pixel budget shared by rendering, training, serving and evaluation."""

    render: RenderSpec = Field(default_factory=RenderSpec)
    """SVG sandbox limits."""

    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    """Evaluation stage settings."""

    health: HealthSpec = Field(default_factory=HealthSpec)
    """Known-answer probes and health alarms."""

    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """Compute per stage kind."""

    storage: StorageSpec = Field(default_factory=StorageSpec)
    """Artifact store."""

    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    """How the operator runs stages on Kubernetes (image, queue, retries); ignored locally."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.roles.proposer.rollout_batch_size <= "
            "size(self.data.topics) * self.data.seed_rows_per_topic",
            "roles.proposer.rollout_batch_size must be <= the seed rows (data.topics x "
            "data.seed_rows_per_topic)",
            "roles.proposer.rollout_batch_size",
        ),
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> RunSpec:
        problems = []
        proposer = self.roles.proposer
        seed_rows = len(self.data.topics) * self.data.seed_rows_per_topic
        if proposer.rollout_batch_size > seed_rows:
            problems.append(
                f"roles.proposer.rollout_batch_size: got {proposer.rollout_batch_size}, more than "
                f"the {seed_rows} seed rows (data.topics x data.seed_rows_per_topic); raise "
                "data.seed_rows_per_topic or lower the batch"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Metadata(_Spec):
    """The part of Kubernetes object metadata a run file carries."""

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)

    name: str = Field(
        "mmzero", min_length=1, max_length=40, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """Run name: a DNS label of at most 40 characters, so that every child name fits."""

    namespace: str | None = None
    """Namespace on a cluster; ignored by the local executor."""


class MMZeroRun(_Spec):
    """A whole run file: the same document goes to `mmzero run` and to `kubectl apply`."""

    apiVersion: Literal["mmzero.dev/v1alpha1"] = API_VERSION
    """Always `mmzero.dev/v1alpha1`."""

    kind: Literal["MMZeroRun"] = KIND
    """Always `MMZeroRun`."""

    metadata: Metadata = Field(default_factory=Metadata)
    """Run name (and namespace on a cluster)."""

    spec: RunSpec = Field(default_factory=RunSpec)
    """The run's parameters."""


def _describe(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """First sentence of the docstring of the field at `loc`, to say what is allowed."""
    fields = model.model_fields
    for i, part in enumerate(loc):
        info = fields.get(str(part))
        if info is None:
            return ""
        annotation = info.annotation
        if i == len(loc) - 1 or not (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        ):
            text = " ".join((info.description or "").split())
            return text.split(". ")[0].rstrip(".")
        fields = annotation.model_fields
    return ""


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 60
_SHOWN.maxother = 60
"""A value given, as an error message shows it: one bounded line, however large the value (a
YAML alias bomb, a megabyte string, a key with a newline)."""

MAX_NODES: Final = 100_000
"""Values a run file may hold once its YAML aliases are expanded (a real one holds a few
hundred): a bound that stops an alias bomb before anything walks it."""


def _shown(part: object) -> str:
    text = str(part)
    return text if text.isprintable() and len(text) <= 60 else _SHOWN.repr(part)


def format_errors(error: ValidationError, source: str, extra: Sequence[str] = ()) -> str:
    """One message naming every wrong field: its path, the value given and the rule broken;
    `extra` adds problems found outside the model (a run file's missing metadata)."""
    lines = list(extra)
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        path = ".".join(_shown(p) for p in loc) or "(top level)"
        message = " ".join(item["msg"].removeprefix("Value error, ").split())
        if item["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field; remove it or check its spelling")
            continue
        value = item.get("input")
        shown = _SHOWN.repr(value) if not isinstance(value, dict) else "{...}"
        hint = "" if isinstance(value, dict) else _describe(MMZeroRun, loc)
        line = f"{path}: got {shown}; {message}"
        lines.append(f"{line} ({hint})" if hint else line)
    return _problems(source, lines)


def _problems(source: str, problems: Sequence[str]) -> str:
    """The run spec's error message: a count naming `source`, then one indented line each."""
    head = f"{source}: {len(problems)} problem(s) in the run spec:"
    return "\n".join([head, *(f"  {problem}" for problem in problems)])


def _missing_metadata(document: dict[Any, Any]) -> list[str]:
    """A run file must name its run, as the API server requires of `kubectl apply`."""
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and "name" in metadata:
        return []
    where = "metadata" if metadata is None else "metadata.name"
    return [
        f"{where}: missing; a run file names its run (metadata: {{name: my-run}}), as "
        "`kubectl apply` requires"
    ]


def parse_run(document: Any, source: str = "run spec", *, file: bool = False) -> MMZeroRun:
    """Validate a parsed YAML/JSON document; raise SpecError listing every problem. A `file`
    (what a user hands us, not a document built in code) must carry `metadata.name`."""
    if not isinstance(document, dict):
        got = "an empty document" if document is None else type(document).__name__
        raise SpecError(
            f"{source}: expected a mapping with apiVersion, kind, metadata and spec, got {got}"
        )
    problems = _missing_metadata(document) if file else []
    try:
        run = MMZeroRun.model_validate(document)
    except ValidationError as error:
        raise SpecError(format_errors(error, source, problems)) from None
    if problems:
        raise SpecError(_problems(source, problems))
    return run


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's several-line report as one line: where the problem is, and what it is."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f"{error.context}, " if error.context else ""
        return f"at line {mark.line + 1}, column {mark.column + 1}: {context}{error.problem}"
    return ": " + " ".join(str(error).split())


def _check_size(document: Any, source: str) -> None:
    """Refuse a document of more than MAX_NODES values, aliases expanded (without expanding)."""
    pending, seen = [document], 0
    while pending:
        node = pending.pop()
        seen += 1
        if seen > MAX_NODES:
            raise SpecError(
                f"{source}: more than {MAX_NODES} values once its YAML aliases are expanded; a "
                "run file is a few hundred: remove the anchors (&) and aliases (*) that repeat"
            )
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def parse_run_file(data: bytes, source: str) -> MMZeroRun:
    """Decode, parse and validate the bytes of a run file (YAML or JSON, UTF-8): every fault is
    one SpecError naming `source`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{source}: not UTF-8 text (byte {error.start}: {data[error.start : error.end]!r}); "
            "save the run file as UTF-8"
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{source}: not valid YAML {_yaml_problem(error)}") from None
    except RecursionError:
        raise SpecError(
            f"{source}: not valid YAML: nested too deeply to read; look for a bracket left open"
        ) from None
    except (ValueError, TypeError, AttributeError) as error:
        # PyYAML's constructors raise these for a value that does not construct: 2026-13-45, an
        # integer of 5000 digits, `!!timestamp` on a word
        raise SpecError(
            f"{source}: not valid YAML: a value cannot be read ({' '.join(str(error).split())}); "
            "quote it to make it a string, or correct it"
        ) from None
    _check_size(document, source)
    return parse_run(document, source, file=True)


def shown_path(path: str | Path) -> str:
    """A path as a message names it: quoted when it is blank or holds a control character (a
    newline in a name would split a one-line error)."""
    name = str(path)
    return name if name.isprintable() and name.strip() == name else repr(name)


def user_path(text: str) -> Path:
    """A path a user wrote in a spec or on the command line, `~` expanded; `~user` of a user
    this machine does not have stays as written (no such file, which the caller reports)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def load_run(path: str | Path) -> MMZeroRun:
    """Read and validate a run file (YAML or JSON)."""
    path = Path(path)
    name = shown_path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(
            f"{name}: cannot read the run file ({error.strerror or error}); check the path"
        ) from None
    return parse_run_file(data, name)


def json_schema() -> dict[str, Any]:
    """JSON schema of the run file, the source of the CRD and docs/spec.md."""
    return MMZeroRun.model_json_schema()
