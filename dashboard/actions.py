"""What the dashboard's buttons change: cancel and resume (db.queue) and delete (db.delete, as
`python -m engine delete`); and which of them apply to a run (a button that cannot apply is
disabled, not silently ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import Engine

from db import queue
from db.delete import delete_runs as db_delete_runs
from db.queue import RESUMABLE, NoSuchRun, request_cancel
from db.status import QUEUED, RUNNING
from db.views import CANCELLING, DEAD


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


def delete_runs(engine: Engine, run_ids: Sequence[int]) -> Outcome:
    """Delete runs with their metrics and files (db.delete); live runs are skipped with a message."""
    deleted = db_delete_runs(engine, run_ids)
    return Outcome(done=deleted.done, messages=deleted.messages)
