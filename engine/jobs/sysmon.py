"""Device use of a run, sampled by its own process every few seconds and stored as metrics.

sys/cpu_percent (this process, all its threads: 100 = one core busy), sys/memory_mb (its resident
memory), and once the run uses a GPU, sys/gpu_util (the device's utilization in %, read from NVML
through nvidia-ml-py when it is installed) and sys/gpu_memory_mb (what this process's CUDA
allocator holds). A thread, off the training loop's path, writing its rows in its own short
transactions. Rows are numbered by sample (step 0, 1, 2, ...; a resumed run goes on counting)
and drawn against wall time.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import psutil
import torch
from sqlalchemy import Engine

from db.queries import SYS_CPU as CPU, SYS_GPU_MEMORY as GPU_MEMORY, SYS_GPU_UTIL as GPU_UTIL, SYS_MEMORY as MEMORY
from db.queries import next_metric_step, write_metrics
from db.session import write_tx

SYSMON_S = float(os.environ.get("SIMCLR_SYSMON_S", "5"))


def gpu_sample() -> dict[str, float]:
    """GPU readings of the device this process trains on; none before it has touched CUDA."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {}
    device = torch.cuda.current_device()
    values = {GPU_MEMORY: torch.cuda.memory_reserved(device) / 2**20}
    try:
        # Maps CUDA_VISIBLE_DEVICES to NVML's physical index for us; needs nvidia-ml-py.
        values[GPU_UTIL] = float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 — no NVML (library or driver): memory alone still tells something
        pass
    return values


class SystemMonitor(threading.Thread):
    """Every `interval_s`: sample this process's device use and write it as sys/* metric rows."""

    def __init__(self, db: Engine, run_id: int, interval_s: float | None = None):
        super().__init__(daemon=True, name=f"sysmon-{run_id}")
        self.db, self.run_id = db, run_id
        self.interval_s = SYSMON_S if interval_s is None else interval_s
        self.process = psutil.Process()
        self.process.cpu_percent(interval=None)  # prime: the first reading is measured from here
        self.next_step = next_metric_step(db, run_id, CPU)
        self._halt = threading.Event()

    def sample(self) -> dict[str, float]:
        return {CPU: self.process.cpu_percent(interval=None), MEMORY: self.process.memory_info().rss / 2**20,
                **gpu_sample()}

    def record(self) -> None:
        t = time.time()
        rows = [dict(run_id=self.run_id, name=name, step=self.next_step, epoch=0.0, value=value, time=t)
                for name, value in self.sample().items()]
        with write_tx(self.db) as conn:
            write_metrics(conn, rows)
        self.next_step += 1

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                self.record()
            except Exception as e:  # noqa: BLE001 — a busy database must not kill training
                print(f"device-use sample failed: {e}", file=sys.stderr)

    def stop(self) -> None:
        self._halt.set()
