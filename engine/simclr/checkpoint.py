"""Checkpoints written atomically: a crash or a full disk mid-write leaves the previous one intact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    os.replace is atomic on POSIX, so a reader (or a resumed run) sees either the old file or the
    new one, never half of one. On any failure (e.g. ENOSPC) the temp file is removed and the
    error propagates; the old checkpoint is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    # weights_only: a checkpoint is data, never code (torch.load would otherwise unpickle anything).
    return torch.load(path, map_location=map_location, weights_only=True)
