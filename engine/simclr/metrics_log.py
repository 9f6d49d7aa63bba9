"""Batched metric logging: rows are buffered and written in one transaction about once a second.

Values may be tensors: turning a CUDA tensor into a float forces a device sync, so that happens
once per flush for the whole buffer instead of once per step.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from sqlalchemy import Engine

from db.queries import write_progress


class NonFiniteLoss(FloatingPointError):
    def __init__(self, name: str, step: int, epoch: int):
        self.name, self.step, self.epoch = name, step, epoch
        super().__init__(f"{name} became NaN at epoch {epoch} step {step}; try a lower learning rate")


class MetricLogger:
    """Buffers (name, step, epoch, value) and flushes every `interval_s` seconds or `max_rows` rows.

    Each flush also records the run's progress (epoch, step) and heartbeat in the same transaction.
    Values of the names in `finite_guard` are checked at flush: NaN/inf raises NonFiniteLoss.
    """

    def __init__(self, engine: Engine, run_id: int, *, interval_s: float = 1.0, max_rows: int = 500,
                 finite_guard: tuple[str, ...] = ("train/loss",)):
        self.engine, self.run_id = engine, run_id
        self.interval_s, self.max_rows, self.finite_guard = interval_s, max_rows, finite_guard
        self._rows: list[tuple[str, int, float, Any, float]] = []
        self._last_flush = time.monotonic()
        self.progress: dict[str, Any] = {}

    def log(self, name: str, value: float | torch.Tensor, step: int, epoch: float) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach()
        self._rows.append((name, step, epoch, value, time.time()))
        if len(self._rows) >= self.max_rows or time.monotonic() - self._last_flush >= self.interval_s:
            self.flush()

    def set_progress(self, **values: Any) -> None:
        """Columns of `runs` to update at the next flush (epoch, step, ...)."""
        self.progress.update(values)

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows and not self.progress:
            return
        pending, self._rows = self._rows, []
        values = _to_floats([r[3] for r in pending])
        rows = []
        for (name, step, epoch, _, t), value in zip(pending, values):
            if name in self.finite_guard and not math.isfinite(value):
                self._write(rows)  # keep what came before the failure
                raise NonFiniteLoss(name, step, int(epoch) + 1)
            rows.append(dict(run_id=self.run_id, name=name, step=step, epoch=epoch, value=value, time=t))
        self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        write_progress(self.engine, self.run_id, rows, self.progress)
        self.progress = {}


def _to_floats(values: list[Any]) -> list[float]:
    """Floats from a mix of numbers and 0-d tensors, with one device transfer for all the tensors."""
    tensors = [(i, v) for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
    out = [float(v) if not isinstance(v, torch.Tensor) else 0.0 for v in values]
    if tensors:
        stacked = torch.stack([v.float().reshape(()) for _, v in tensors]).cpu().tolist()
        for (i, _), v in zip(tensors, stacked):
            out[i] = v
    return out
