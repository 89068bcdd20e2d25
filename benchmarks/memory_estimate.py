"""The trainer memory estimate (`models/footprint.py`) against a measured peak.

Builds a random Qwen2.5-VL-shaped model of about 200 M parameters (the real 151,936-token
vocabulary, so the LM head and embeddings weigh what they weigh in Qwen), runs one GRPO step
of our trainer on it in a fresh process with fixed-length synthetic rollouts, and compares
the process's peak resident memory above its baseline (after imports, before the model) with
`trainer_footprint` for the same sizes. fp32 on CPU; on a GPU machine pass `--device cuda` to
compare with `torch.cuda.max_memory_allocated` in bf16.

Usage: `uv run python benchmarks/memory_estimate.py [--device cpu] [--micro 8]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PROMPTS, GROUP, RESPONSE = 2, 4, 128
SEED = 0


def build(out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mmzero_runtime.models.tiny import build_tiny

    tiny = build_tiny(out / "tiny", seed=SEED)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 8,
            "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151_936,
            "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                "mrope_section": [8, 12, 12]},
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"depth": 4, "hidden_size": 256, "intermediate_size": 1024, "num_heads": 4,
                       "out_hidden_size": 768, "fullatt_block_indexes": [3]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(SEED)
    target = out / "random-200m"
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(target)
    for name in os.listdir(tiny):  # tokenizer and processor files of the tiny model
        if not name.startswith("model") and not (target / name).exists():
            (target / name).write_bytes((tiny / name).read_bytes())
    return target


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(model_dir: Path, device: str, micro: int) -> dict[str, Any]:
    """One step in this process; peak memory above the baseline taken before loading."""
    import torch

    from mmzero_runtime.models.tiny import TINY_IMAGE
    from mmzero_runtime.roles import build_proposer_messages
    from mmzero_runtime.spec import SEED_TOPICS, GRPOSpec
    from mmzero_runtime.training.batch import Rollout
    from mmzero_runtime.training.trainer import GRPOTrainer

    torch.set_num_threads(1)
    baseline = _rss_bytes()
    spec = GRPOSpec(
        group_size=GROUP, rollout_batch_size=PROMPTS, global_batch_size=PROMPTS,
        micro_batch_size=micro, micro_batch_size_experience=micro,
        max_response_tokens=RESPONSE, max_prompt_tokens=1024,
    )  # fmt: skip
    trainer = GRPOTrainer.from_pretrained(model_dir, spec, TINY_IMAGE, device=device)
    generator = torch.Generator().manual_seed(SEED)
    rollouts = []
    for row in range(PROMPTS * GROUP):
        group = row // GROUP
        ids = torch.randint(10, 1000, (RESPONSE,), generator=generator).tolist()
        messages = build_proposer_messages(SEED_TOPICS[group])
        rollouts.append(Rollout(f"r{row}", f"g{group}", messages, None, ids, float(row % 3)))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stats = trainer.step(rollouts)
    prompt = int((stats["tokens/total"] - stats["tokens/response"]) / (PROMPTS * GROUP))
    if device == "cuda":
        peak = int(torch.cuda.max_memory_allocated())
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"peak_bytes": peak, "prompt_tokens": prompt, "spec": spec.model_dump(mode="json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--micro", type=int, default=8, help="micro-batch size (sequences)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.device, args.micro)))
        return

    from transformers import AutoConfig

    from mmzero_runtime.models.footprint import GIB, model_shape, trainer_footprint
    from mmzero_runtime.spec import GRPOSpec

    with tempfile.TemporaryDirectory(prefix="mmzero-mem-") as scratch:
        model_dir = build(Path(scratch))
        command = [sys.executable, __file__, "--child", str(model_dir), "--device", args.device,
                   "--micro", str(args.micro)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        shape = model_shape(AutoConfig.from_pretrained(model_dir))
    spec = GRPOSpec.model_validate(
        {**measured["spec"], "max_prompt_tokens": max(16, measured["prompt_tokens"])}
    )
    estimate = trainer_footprint(shape, spec, dtype_bytes=4 if args.device == "cpu" else 2)
    error = estimate.total / measured["peak_bytes"] - 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, device {args.device}")
    print(f"model: {shape.parameters / 1e6:.0f} M parameters ({shape.vocab} vocab), "
          f"{PROMPTS * GROUP} sequences of {measured['prompt_tokens']} + {RESPONSE} tokens, "
          f"micro-batch {args.micro}")  # fmt: skip
    print("| figure | GiB |")
    print("|---|---|")
    print(f"| measured peak above baseline | {measured['peak_bytes'] / GIB:.2f} |")
    print(f"| estimate | {estimate.total / GIB:.2f} |")
    for name, size in estimate.parts.items():
        print(f"| estimate: {name} | {size / GIB:.2f} |")
    print(f"| estimate error | {error:+.0%} |")


if __name__ == "__main__":
    main()
