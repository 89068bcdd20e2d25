"""Training scalars as TensorBoard event files (`tensorboard --logdir <run>/tensorboard`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ScalarWriter:
    """Writes slash-namespaced scalars (`reward/mean`, `loss/policy`) per step."""

    def __init__(self, directory: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory.mkdir(parents=True, exist_ok=True)
        self._writer: Any = SummaryWriter(log_dir=str(directory))

    def add(self, step: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
