"""Generation throughput of HFGenerator: request-level batching (reproducible) against mixed.

Builds the untrained tiny Qwen2-VL (or loads `--model`), then generates the same Proposer-like
(text) and Solver-like (one chart image) requests with several batch sizes, and prints a
markdown table of new tokens per second, best of `--repeat` runs (the machine is shared). The
untrained model rarely stops, so replies run to `--max-tokens`. Usage: `uv run python
benchmarks/generation.py [--requests 8] [--n 4] [--max-tokens 48] [--model DIR] [--threads N]
[--repeat 3]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from mmzero_runtime.generation import GenerationRequest
from mmzero_runtime.generation.batching import Batching
from mmzero_runtime.generation.hf import HFGenerator
from mmzero_runtime.models.loading import LoadedVLM, load_vlm
from mmzero_runtime.models.tiny import TINY_IMAGE, build_tiny
from mmzero_runtime.roles import build_proposer_messages, build_solver_messages
from mmzero_runtime.spec import SEED_TOPICS, SamplingSpec


def requests(
    kind: str, count: int, n: int, max_tokens: int, image: Path
) -> list[GenerationRequest]:
    sampling = SamplingSpec(temperature=1.0, top_p=0.95, max_tokens=max_tokens)
    out = []
    for i in range(count):
        if kind == "text":
            messages = build_proposer_messages(SEED_TOPICS[i % len(SEED_TOPICS)])
            out.append(GenerationRequest(f"p{i}", messages, (), n, sampling, i))
        else:
            messages = build_solver_messages(f"What is the value of bar {i % 5}?")
            out.append(GenerationRequest(f"s{i}", messages, (image,), n, sampling, i))
    return out


def measure(vlm: LoadedVLM, batch: list[GenerationRequest], size: int, mode: Batching) -> float:
    generator = HFGenerator(
        vlm.model, vlm.processor, image_spec=TINY_IMAGE, max_prompt_tokens=4096,
        batch_size=size, model_digest="bench", batching=mode,
    )  # fmt: skip
    start = time.perf_counter()
    results = generator.generate(batch)
    seconds = time.perf_counter() - start
    return sum(result.completion_tokens for result in results) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="mmzero-bench-"))
    model_dir = args.model or build_tiny(scratch / "tiny", seed=0)
    vlm = load_vlm(model_dir, image_spec=TINY_IMAGE)
    image = scratch / "chart.png"
    chart = Image.new("RGB", (224, 168), "white")
    chart.paste((31, 119, 180), (30, 60, 80, 150))
    chart.save(image)
    plans: list[tuple[Batching, int]] = [("request", size) for size in sorted({1, args.n})]
    plans += [("mixed", size) for size in (8, 16, 32)]
    print(f"load average {os.getloadavg()[0]:.1f}, torch threads {args.threads}, "
          f"{args.requests} requests x n={args.n}, {args.max_tokens} new tokens each")  # fmt: skip
    print("| workload | batching | batch size | new tokens/s |\n|---|---|---|---|")
    for kind in ("text", "image"):
        batch = requests(kind, args.requests, args.n, args.max_tokens, image)
        measure(vlm, batch[:1], args.n, "request")  # warm-up
        for mode, size in plans:
            rate = max(measure(vlm, batch, size, mode) for _ in range(args.repeat))
            print(f"| {kind} | {mode} | {size} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
