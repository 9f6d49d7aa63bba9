"""What the dashboard's buttons change: cancel (db.queue) and delete (db.delete, as `python -m engine delete`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import Engine

from db.delete import delete_runs as db_delete_runs
from db.queue import NoSuchRun, request_cancel


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


def delete_runs(engine: Engine, run_ids: Sequence[int]) -> Outcome:
    """Delete runs with their metrics and files (db.delete); live runs are skipped with a message."""
    deleted = db_delete_runs(engine, run_ids)
    return Outcome(done=deleted.done, messages=deleted.messages)
