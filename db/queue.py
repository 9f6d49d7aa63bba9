"""The job queue: cancel (here), and claim / requeue / recover (added with the worker)."""

from __future__ import annotations

from sqlalchemy import Engine, update

from db.models import runs
from db.queries import get_run
from db.session import write_tx
from db.status import CANCELLED, QUEUED, RUNNING, transition


class NoSuchRun(LookupError):
    pass


def request_cancel(engine: Engine, run_id: int) -> str:
    """Cancel a run: a queued one at once, a running one at its next step boundary.

    Returns what happened, in words, for the CLI and the dashboard.
    """
    with write_tx(engine) as conn:
        run = get_run(conn, run_id)
        if run is None:
            raise NoSuchRun(f"no run with id {run_id}")
        if run["status"] == QUEUED and transition(conn, run_id, CANCELLED, expect=QUEUED,
                                                  error="cancelled before it started"):
            return f"run {run_id} cancelled (it was queued)"
        if run["status"] in (QUEUED, RUNNING):  # queued lost a race to a worker: now running
            conn.execute(update(runs).where(runs.c.id == run_id).values(cancel_requested=True))
            return f"run {run_id} will stop at its next step and end cancelled"
        return f"run {run_id} is already {run['status']}; nothing to cancel"
