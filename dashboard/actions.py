"""What the dashboard's buttons change: cancel and resume (via db.queue) and delete; and which of
them apply to a run (a button that cannot apply is disabled, not silently ignored).

Deleting is the one write the dashboard does itself: the run row, its metric rows and the files of
its run folder. A run that is live (running with a fresh heartbeat) is refused: its process would
keep writing rows for a run that no longer exists. Cancel it first; a dead run may be deleted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sqlalchemy import Engine, delete, select

from db.config import run_dir, under_runs_root
from db.identity import database_id
from db.models import metrics, runs
from db import queue
from db.queue import RESUMABLE, NoSuchRun, request_cancel
from db.session import write_tx
from db.status import QUEUED, RUNNING, utcnow
from db.views import CANCELLING, DEAD, display_status


@dataclass
class Outcome:
    done: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def cancel_runs(engine: Engine, run_ids: Sequence[int]) -> Outcome:
    out = Outcome()
    for run_id in run_ids:
        try:
            out.messages.append(request_cancel(engine, run_id))
            out.done.append(run_id)
        except NoSuchRun as e:
            out.messages.append(str(e))
    return out


def can_cancel(run: dict) -> bool:
    """Queued, running, or dead (then it ends cancelled instead of being requeued)."""
    return run["display_status"] in (QUEUED, RUNNING, DEAD)


def can_resume(run: dict) -> bool:
    """Failed, cancelled, or dead: queued again to continue from its last checkpoint."""
    return run["display_status"] in (*RESUMABLE, DEAD)


def can_delete(run: dict) -> bool:
    """Anything but a live run (its process would go on writing rows for a run that is gone)."""
    return run["display_status"] not in (RUNNING, CANCELLING)


def can_discard(run: dict) -> bool:
    """The checkpoint of a run that is not live (a live run rewrites it every epoch)."""
    return can_delete(run)


def resume_runs(engine: Engine, run_ids: Sequence[int]) -> Outcome:
    """Requeue runs to resume from their checkpoints: the same rule as `python -m engine train --resume`."""
    out = Outcome()
    for run_id, message in queue.resume_runs(engine, run_ids):
        out.messages.append(message)
        if "queued to resume" in message:
            out.done.append(run_id)
    return out


def _run_files(run: dict, db_id: str) -> list[Path]:
    """The run's folder and any recorded log/checkpoint, only where they lie under the runs root:
    paths come from the database, and a delete button must never remove anything outside it."""
    candidates = (run_dir(run["id"], db_id), run.get("log_path"), run.get("checkpoint_path"))
    return [p for p in map(under_runs_root, candidates) if p is not None and p.exists()]


def delete_runs(engine: Engine, run_ids: Sequence[int]) -> Outcome:
    """Delete runs with their metrics and files; live runs are skipped with a message."""
    out = Outcome()
    now = utcnow()
    files: list[Path] = []
    db_id = database_id(engine)
    with write_tx(engine) as conn:
        # Read and delete in one write transaction, so a run cannot be claimed between the check and the delete.
        found = {r["id"]: dict(r) for r in conn.execute(select(runs).where(runs.c.id.in_(list(run_ids)))).mappings()}
        doomed = []
        for run_id in run_ids:
            run = found.get(run_id)
            if run is None:
                out.messages.append(f"run {run_id} does not exist")
            elif run["status"] == RUNNING and display_status(run, now) != DEAD:
                out.messages.append(f"run {run_id} is running: cancel it first, then delete it")
            else:
                doomed.append(run_id)
                files.extend(_run_files(run, db_id))
        if doomed:
            # Explicit, not left to ON DELETE CASCADE: SQLite enforces that only with foreign_keys=ON.
            conn.execute(delete(metrics).where(metrics.c.run_id.in_(doomed)))
            conn.execute(delete(runs).where(runs.c.id.in_(doomed)))
    for path in files:  # after the commit: a failed transaction must not have removed files
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    out.done.extend(doomed)
    if doomed:
        out.messages.append(f"deleted run{'s' if len(doomed) > 1 else ''} {', '.join(map(str, doomed))} "
                            "with metrics, log and checkpoints")
    return out
