"""Run statuses and the one function allowed to change them.

    queued -> running -> completed | failed | cancelled
    queued -> cancelled            (cancelled before a worker took it)
    running -> queued              (requeued after its worker or process was lost, retries left)
    failed | cancelled -> queued   (resubmitted: `train --resume` continues from its last checkpoint)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, update

from db.models import runs

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)

# What a running run is doing (runs.phase), set by the trainer through db.queries.set_phase.
STARTING, TRAINING, KNN, PROBE, CHECKPOINT = "starting", "training", "kNN", "linear probe", "checkpoint"
PHASES = (STARTING, TRAINING, KNN, PROBE, CHECKPOINT)

ALLOWED: dict[str, tuple[str, ...]] = {
    QUEUED: (RUNNING, CANCELLED),
    RUNNING: (COMPLETED, FAILED, CANCELLED, QUEUED),
    COMPLETED: (),
    FAILED: (QUEUED,),
    CANCELLED: (QUEUED,),
}


class IllegalTransition(RuntimeError):
    pass


def utcnow() -> datetime:
    """Naive UTC, as stored (SQLite has no time zones)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def transition(conn: Connection, run_id: int, new: str, *, expect: str | tuple[str, ...] | None = None,
               claimed_by: str | None = None, attempt: int | None = None, **values: Any) -> bool:
    """Move run `run_id` to status `new`, setting `values` in the same UPDATE.

    `expect` (default: every status that may legally move to `new`) is checked in the WHERE
    clause, so two processes racing to change one run cannot both win. Returns False when the
    run was not in an expected status (someone else moved it first). Raises IllegalTransition
    when `expect` names a move the table above forbids. `claimed_by` also requires the run's
    worker_id (and `attempt` its attempt number), so a process whose run was requeued and claimed
    again, by another worker or by the same one, cannot finish it.
    """
    if new not in STATUSES:
        raise IllegalTransition(f"unknown status {new!r}")
    sources = (expect,) if isinstance(expect, str) else expect
    if sources is None:
        sources = tuple(s for s, targets in ALLOWED.items() if new in targets)
    for src in sources:
        if new not in ALLOWED[src]:
            raise IllegalTransition(f"a run cannot go from {src} to {new}")
    if new in FINISHED:
        values.setdefault("finished_at", utcnow())
    elif new == QUEUED:
        values.setdefault("finished_at", None)
    # A run that is not running is doing nothing; a newly claimed one is starting (loading data).
    values.setdefault("phase", STARTING if new == RUNNING else None)
    query = update(runs).where(runs.c.id == run_id, runs.c.status.in_(sources))
    if claimed_by is not None:
        query = query.where(runs.c.worker_id == claimed_by)
    if attempt is not None:
        query = query.where(runs.c.attempts == attempt)
    result = conn.execute(query.values(status=new, **values))
    return result.rowcount == 1
