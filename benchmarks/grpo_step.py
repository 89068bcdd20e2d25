"""GRPO step time: our `GRPOTrainer` against TRL's `GRPOTrainer` on the same model and batch.

Both sides run the settings TRL was measured with (tiny-model-notes): 4 text-only Proposer
prompts x 4 completions = 16 per step, up to 200 completion tokens, sampling at T 1.0 (top-p 1,
top-k 0, the same `GenerationConfig`), DAPO token-mean loss, clip 0.2 / 0.3, KL (k3) 0.01 against
a frozen reference, AdamW lr 1e-6 / weight decay 0.01, gradient checkpointing, fp32 on CPU (bf16
autocast on CUDA), one optimizer update over all 16 sequences (TRL: per-device batch 16; ours:
micro-batch 16). The reward is the share of even token ids (no decoding, same code both sides).

A step is timed whole (generation + reward + update) and generation is timed separately on both
sides (ours: plain `model.generate`; TRL: its `_generate_single_turn`), so the table shows the
step with and without generation. Each side runs in its own process (peak RSS per side); sides
take turns for `--rounds` rounds because this shared VM's speed drifts.

Usage: `uv run python benchmarks/grpo_step.py [--steps 3] [--rounds 3] [--threads 1] [--skip-trl]`
       `uv run python benchmarks/grpo_step.py --device cuda --model-size 3b` (GPU machine)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPTS = 4
GROUP = 4
MAX_COMPLETION = 200
SEED = 0


def even_share(ids: list[int]) -> float:
    """The benchmark reward: share of even token ids (0 for an empty completion)."""
    return sum(1 for t in ids if t % 2 == 0) / max(len(ids), 1)


def build_model(size: str, out: Path, device: str) -> Path:
    """The untrained tiny Qwen2-VL, or a random model with Qwen2.5-VL-3B's shapes."""
    from mmzero_runtime.models.tiny import build_tiny

    tiny = build_tiny(out / "tiny", seed=SEED)
    if size == "tiny":
        return tiny
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "vocab_size": 151_936,  # the real vocabulary: the logits dominate memory
            "max_position_embeddings": 32_768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [16, 24, 24],
            },
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 2048,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    target = out / "qwen2_5_vl_3b_random"
    model.save_pretrained(target)
    for name in os.listdir(tiny):  # tokenizer and processor files of the tiny model, no weights
        if not name.startswith("model") and not (target / name).exists():
            (target / name).write_bytes((tiny / name).read_bytes())
    return target


def prompts() -> list[Any]:
    from mmzero_runtime.roles import build_proposer_messages
    from mmzero_runtime.spec import SEED_TOPICS

    return [build_proposer_messages(topic) for topic in SEED_TOPICS[:PROMPTS]]


def generation_config(tokenizer: Any, image_token_id: int) -> Any:
    """TRL's HF-generate `GenerationConfig` for these settings, used by both sides; the image
    placeholder is suppressed as TRL does for VLMs (a sampled one breaks the training forward)."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=MAX_COMPLETION,
        do_sample=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id],
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        repetition_penalty=1.0,
        suppress_tokens=[image_token_id],
        disable_compile=True,
    )


def rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_ours(model_dir: Path, device: str, steps: int) -> dict[str, Any]:
    import torch

    from mmzero_runtime.models.inputs import encode_batch
    from mmzero_runtime.models.tiny import TINY_IMAGE
    from mmzero_runtime.spec import GRPOSpec
    from mmzero_runtime.training.batch import Rollout
    from mmzero_runtime.training.trainer import GRPOTrainer

    torch.manual_seed(SEED)
    sequences = PROMPTS * GROUP
    spec = GRPOSpec(
        group_size=GROUP,
        rollout_batch_size=PROMPTS,
        global_batch_size=PROMPTS,
        micro_batch_size=sequences,
        micro_batch_size_experience=sequences,
        max_response_tokens=MAX_COMPLETION,
    )
    trainer = GRPOTrainer.from_pretrained(model_dir, spec, TINY_IMAGE, device=device)
    tokenizer = trainer.processor.tokenizer
    messages = prompts()
    inputs = encode_batch(
        trainer.processor, messages, [[] for _ in messages], image_spec=TINY_IMAGE
    )
    inputs = {k: v.to(device) for k, v in inputs.items()}
    config = generation_config(tokenizer, trainer.model.config.image_token_id)
    config.num_return_sequences = GROUP
    setup_rss = rss_gib()
    records = []
    for step in range(steps + 1):  # step 0 is warm-up
        sync(device)
        started = time.perf_counter()
        trainer.model.eval()
        with torch.no_grad():
            output = trainer.model.generate(**inputs, generation_config=config)
        sync(device)
        generated = time.perf_counter()
        rollouts = []
        for row, ids in enumerate(output[:, inputs["input_ids"].shape[1] :].tolist()):
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
            group = row // GROUP
            rollouts.append(
                Rollout(
                    f"{step}-{row}", f"{step}-{group}", messages[group], None, ids, even_share(ids)
                )
            )
        stats = trainer.step(rollouts)
        sync(device)
        finished = time.perf_counter()
        records.append(
            {
                "step_s": finished - started,
                "generate_s": generated - started,
                "completion_tokens": stats["tokens/response"],
                "prompt_tokens": stats["tokens/total"] - stats["tokens/response"],
            }
        )
    return {"records": records[1:], "setup_rss_gib": setup_rss, "peak_rss_gib": rss_gib()}


def run_trl(model_dir: Path, device: str, steps: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    completion_tokens: list[int] = []

    def reward(completion_ids: list[list[int]], **_: Any) -> list[float]:
        completion_tokens.append(sum(len(ids) for ids in completion_ids))
        return [even_share(ids) for ids in completion_ids]

    rows = [{"prompt": m} for m in prompts()] * (steps + 1)
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-grpo-"),
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        per_device_train_batch_size=PROMPTS * GROUP,
        num_generations=GROUP,
        max_completion_length=MAX_COMPLETION,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.3,
        beta=0.01,
        learning_rate=1e-6,
        lr_scheduler_type="constant",  # the reference's (and ours); HF's default decays
        weight_decay=0.01,
        max_grad_norm=1.0,
        gradient_checkpointing=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_steps=steps + 1,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=SEED,
        dataloader_num_workers=0,
        disable_tqdm=True,
        generation_kwargs={"suppress_tokens": [model.config.image_token_id]},
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    generate_times: list[float] = []
    original = trainer._generate_single_turn

    def timed_generate(*a: Any, **k: Any) -> Any:
        sync(device)
        started = time.perf_counter()
        result = original(*a, **k)
        sync(device)
        generate_times.append(time.perf_counter() - started)
        return result

    trainer._generate_single_turn = timed_generate  # type: ignore[method-assign]
    step_times: list[float] = []

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            sync(device)
            self.started = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            sync(device)
            step_times.append(time.perf_counter() - self.started)

    trainer.add_callback(Timer())
    setup_rss = rss_gib()
    trainer.train()
    prompt_tokens = len(tokenizer.apply_chat_template(prompts()[0], add_generation_prompt=True))
    records = [
        {"step_s": s, "generate_s": g, "completion_tokens": c, "prompt_tokens": prompt_tokens}
        for s, g, c in zip(step_times, generate_times, completion_tokens, strict=True)
    ]
    return {"records": records[1:], "setup_rss_gib": setup_rss, "peak_rss_gib": rss_gib()}


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    records = [r for run in runs for r in run["records"]]
    step = statistics.median(r["step_s"] for r in records)
    generate = statistics.median(r["generate_s"] for r in records)
    update = statistics.median(r["step_s"] - r["generate_s"] for r in records)
    tokens = statistics.mean(r["completion_tokens"] for r in records)
    return {
        "side": name,
        "steps": len(records),
        "completion_tokens": tokens,
        "step_s": step,
        "generate_s": generate,
        "update_s": update,
        "tokens_per_s": tokens / step,
        "update_tokens_per_s": tokens / update,
        "setup_rss_gib": max(run["setup_rss_gib"] for run in runs),
        "peak_rss_gib": max(run["peak_rss_gib"] for run in runs),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| trainer | steps | completion tokens / step | step s (with generation) | "
        "generation s | step s without generation | completion tok/s (step) | "
        "completion tok/s (without generation) | RSS after setup GiB | peak RSS GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['side']} | {r['steps']} | {r['completion_tokens']:.0f} | {r['step_s']:.2f} | "
            f"{r['generate_s']:.2f} | {r['update_s']:.2f} | {r['tokens_per_s']:.0f} | "
            f"{r['update_tokens_per_s']:.0f} | {r['setup_rss_gib']:.2f} | {r['peak_rss_gib']:.2f} |"
        )
    return "\n".join(lines)


def child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    runner = run_ours if args.runner == "ours" else run_trl
    result = runner(Path(args.model_dir), args.device, args.steps)
    Path(args.json).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model-size", choices=["tiny", "3b"], default="tiny")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per run (+1 warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side, taking turns")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads per side (0: torch's default). 1 on the shared 2-core VM: "
        "with 2 threads and other load, OpenMP barriers made decoding 5-20x slower at random",
    )
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--runner", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        child(args)
        return
    sides = ["ours"] if args.skip_trl else ["ours", "trl"]
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as scratch:
        model_dir = build_model(args.model_size, Path(scratch), args.device)
        results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        load = [os.getloadavg()[0]]
        for round_ in range(args.rounds):
            for side in sides:
                out = Path(scratch) / f"{side}-{round_}.json"
                command = [
                    sys.executable,
                    __file__,
                    "--runner",
                    side,
                    "--model-dir",
                    str(model_dir),
                ]
                command += ["--device", args.device, "--steps", str(args.steps), "--json", str(out)]
                command += ["--threads", str(args.threads)]
                env = dict(os.environ)
                if args.threads:
                    env |= {
                        "OMP_NUM_THREADS": str(args.threads),
                        "MKL_NUM_THREADS": str(args.threads),
                    }
                print(f"round {round_ + 1}/{args.rounds}: {side} ...", file=sys.stderr, flush=True)
                subprocess.run(command, check=True, env=env)
                results[side].append(json.loads(out.read_text()))
                load.append(os.getloadavg()[0])
    rows = [summarise(side, runs) for side, runs in results.items()]
    import torch
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if not args.skip_trl:
        import trl

        versions += f", trl {trl.__version__}"
    threads = args.threads or "default"
    print(f"{platform.machine()} {args.device}, {args.model_size} model, {threads} thread(s)")
    print(versions)
    print(f"1-minute load average during the runs: {min(load):.1f} to {max(load):.1f}")
    print(table(rows))
    if len(rows) == 2:
        ours, theirs = rows
        print(
            f"\nours / TRL time: step {ours['step_s'] / theirs['step_s']:.2f}x, "
            f"without generation {ours['update_s'] / theirs['update_s']:.2f}x, "
            f"generation {ours['generate_s'] / theirs['generate_s']:.2f}x; "
            f"peak RSS {ours['peak_rss_gib'] / theirs['peak_rss_gib']:.2f}x"
        )


if __name__ == "__main__":
    main()
