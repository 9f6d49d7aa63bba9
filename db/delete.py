"""Deleting runs: the row, its metric rows and the files of its run folder, all or nothing per run.

The dashboard's Delete button and `python -m engine delete` both come here. A run that is live
(running with a fresh heartbeat) is refused: its process would keep writing rows for a run that no
longer exists. Cancel it first; a dead run (no heartbeat within its worker's limit) may be deleted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from sqlalchemy import Engine, delete

from db.config import run_dir, under_runs_root
from db.identity import database_id
from db.heartbeat import is_stale
from db.models import metrics, runs
from db.queue import runs_with_stale_limit
from db.session import write_tx
from db.status import RUNNING, utcnow


@dataclass
class Deleted:
    done: list[int] = field(default_factory=list)  # the ids deleted
    messages: list[str] = field(default_factory=list)  # one line per refusal, then one for what was deleted


def run_files(run: Mapping[str, Any], db_id: str) -> list[Path]:
    """The run's folder and any recorded log/checkpoint, only where they lie under the runs root:
    paths come from the database, and a delete must never remove anything outside it."""
    candidates = (run_dir(run["id"], db_id), run.get("log_path"), run.get("checkpoint_path"))
    return [p for p in map(under_runs_root, candidates) if p is not None and p.exists()]


def delete_runs(engine: Engine, run_ids: Sequence[int]) -> Deleted:
    """Delete runs with their metrics and files; missing and live runs are skipped with a message."""
    out = Deleted()
    now = utcnow()
    files: list[Path] = []
    db_id = database_id(engine)
    with write_tx(engine) as conn:
        # Read and delete in one write transaction, so a run cannot be claimed between the check and the delete.
        query = runs_with_stale_limit().where(runs.c.id.in_(list(run_ids)))
        found = {r["id"]: dict(r) for r in conn.execute(query).mappings()}
        for run_id in run_ids:
            run = found.get(run_id)
            if run is None:
                out.messages.append(f"run {run_id} does not exist")
            elif run["status"] == RUNNING and not is_stale(run, now):
                out.messages.append(f"run {run_id} is running: cancel it first, then delete it")
            else:
                out.done.append(run_id)
                files.extend(run_files(run, db_id))
        if out.done:
            # Explicit, not left to ON DELETE CASCADE: SQLite enforces that only with foreign_keys=ON.
            conn.execute(delete(metrics).where(metrics.c.run_id.in_(out.done)))
            conn.execute(delete(runs).where(runs.c.id.in_(out.done)))
    for path in files:  # after the commit: a failed transaction must not have removed files
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if out.done:
        out.messages.append(f"deleted run{'s' if len(out.done) > 1 else ''} {', '.join(map(str, out.done))} "
                            "with metrics, log and checkpoints")
    return out
