"""The files of runs on disk (runs/<database id>/<run id>/: log and checkpoint): how much room they
take, and discarding checkpoints. Shared by the CLI (`python -m engine disk`) and the dashboard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from sqlalchemy import Engine

from db.config import run_dir, runs_root
from db.identity import database_id
from db.queries import get_run, update_run
from db.status import RUNNING

CHECKPOINT = "checkpoint.pt"


def folder_bytes(path: Path) -> int:
    """Bytes held by the files under `path` (allocated blocks: a sparse file counts what it stores)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += min(st.st_size, st.st_blocks * 512) if hasattr(st, "st_blocks") else st.st_size
    return total


def run_bytes(engine: Engine, run_ids: Iterable[int]) -> dict[int, int]:
    """Disk use of each run's folder (0 when it has none)."""
    db_id = database_id(engine)
    return {run_id: folder_bytes(run_dir(run_id, db_id)) for run_id in run_ids}


def total_bytes(engine: Engine) -> int:
    """Disk use of all of this database's run folders."""
    return folder_bytes(runs_root() / database_id(engine))


def discard_checkpoint(engine: Engine, run_id: int) -> str:
    """Delete a run's checkpoint (not while it runs); returns what happened, in words.

    The remedy for a checkpoint that cannot be read (the run then starts over when resumed), and
    the way to free the room a finished run's weights take."""
    run = get_run(engine, run_id)
    if run is None:
        return f"run {run_id} does not exist"
    if run["status"] == RUNNING:
        return f"run {run_id} is running: cancel it first, then discard its checkpoint"
    path = run_dir(run_id, database_id(engine)) / CHECKPOINT
    if not path.exists():
        return f"run {run_id} has no checkpoint"
    size = path.stat().st_size
    path.unlink()
    update_run(engine, run_id, checkpoint_path=None)
    return f"run {run_id}: checkpoint discarded ({size / 1e6:.1f} MB freed)"


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
