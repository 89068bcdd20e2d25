"""Two GRPO steps of the tiny VLM on the DeepSpeed ZeRO-3 engine, one CPU process, saved, then
resumed for a third; run by test_deepspeed.py in a process of its own (DeepSpeed's process
group is process-wide). Usage: deepspeed_step.py MODEL_DIR IMAGE OUT_DIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rollouts import UNCLIPPED, make_rollouts

from mmzero_runtime.models.tiny import TINY_IMAGE
from mmzero_runtime.training.trainer import GRPOTrainer


def main(model: Path, image: Path, out: Path) -> None:
    trainer = GRPOTrainer.from_pretrained(model, UNCLIPPED, TINY_IMAGE, device="cpu",
                                          backend="deepspeed")  # fmt: skip
    stats = [trainer.step(make_rollouts(image, seed, text_group=False)) for seed in (0, 1)]
    trainer.save(out / "checkpoint")
    resumed = GRPOTrainer.resume(out / "checkpoint", UNCLIPPED, TINY_IMAGE, device="cpu",
                                 backend="deepspeed")  # fmt: skip
    stats.append(resumed.step(make_rollouts(image, 2, text_group=False)))
    resumed.save(out / "resumed")
    (out / "stats.json").write_text(json.dumps(stats))


if __name__ == "__main__":
    main(*(Path(arg) for arg in sys.argv[1:4]))
