"""Is there a GPU to train on? Answered without importing torch (the dashboard never does).

The Launch form's defaults depend on it: the full recipe where a GPU is, the measured quick
preset on a CPU-only machine (the full recipe would take the better part of a day there).
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Sequence

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


@lru_cache(maxsize=1)
def machine_has_gpu() -> bool:
    """An NVIDIA GPU on this machine: the driver lists one under /proc, or `nvidia-smi -L` does."""
    try:
        if NVIDIA_PROC.is_dir() and any(NVIDIA_PROC.iterdir()):
            return True
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def gpu_available(worker_devices: Sequence[str]) -> bool:
    """A GPU to train on: a live worker offers one (it may run elsewhere), or this machine has one."""
    return any("cuda" in d for d in worker_devices) or machine_has_gpu()
