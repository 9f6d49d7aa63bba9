"""The `train` command's progress bar: epoch, step, loss, images/s and ETA (tqdm)."""

from __future__ import annotations

import time

import torch
from tqdm import tqdm


class ProgressBar:
    def __init__(self, batch_size: int, epochs: int) -> None:
        self.batch_size, self.epochs = batch_size, epochs
        self.bar: tqdm | None = None
        self._shown = 0.0  # when the loss was last read (monotonic seconds)

    def update(self, step: int, total_steps: int, loss: torch.Tensor) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total_steps, initial=step - 1, unit="step", dynamic_ncols=True)
        self.bar.update(step - self.bar.n)
        # loss.item() syncs a GPU (the host stops queueing steps ahead): refresh the text once a second.
        now = time.monotonic()
        if now - self._shown >= 1.0 or step == total_steps:
            self._shown = now
            epoch = min(self.epochs, (step - 1) * self.epochs // total_steps + 1)
            rate = self.bar.format_dict.get("rate") or 0.0
            self.bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
            self.bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate * self.batch_size:.0f}", refresh=False)

    def write(self, message: str) -> None:
        (self.bar.write if self.bar else print)(message)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
