"""Helpers for the dashboard tests: put runs and metrics in the database the way the engine would."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update
from streamlit.testing.v1 import AppTest

from db.config import RunConfig
from db.models import runs
from db.queries import create_runs, write_metrics
from db.session import write_tx
from db.status import utcnow


def small_config(**overrides: Any) -> RunConfig:
    values: dict[str, Any] = dict(dataset="cifar10-mini", encoder="resnet18", optimizer="lars", batch_size=64,
                                  subset_size=300, epochs=2)
    values.update(overrides)
    return RunConfig(**values)


def add_run(engine: Engine, *, status: str = "queued", sweep_id: str | None = None, name: str | None = None,
            heartbeat_age_s: float = 0.0, **overrides: Any) -> int:
    """Insert a run and force its status and summary columns, as a worker and trainer would leave them."""
    columns = {k: overrides.pop(k) for k in list(overrides) if k in runs.c and k not in RunConfig.__dataclass_fields__}
    run_id = create_runs(engine, [small_config(**overrides)], names=[name], sweep_id=sweep_id)[0]
    now = utcnow()
    values: dict[str, Any] = {"status": status, **columns}
    if status != "queued":
        values.setdefault("started_at", now - timedelta(seconds=heartbeat_age_s + 60))
        values.setdefault("heartbeat_at", now - timedelta(seconds=heartbeat_age_s))
    if status in ("completed", "failed", "cancelled"):
        values.setdefault("finished_at", now)
    with write_tx(engine) as conn:
        # Tests set any status directly; the real transitions are db.status's business (and tested there).
        conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    return run_id


def add_metrics(engine: Engine, run_id: int, name: str, values: list[float], *, start_step: int = 1,
                steps_per_epoch: int = 10) -> None:
    t0 = time.time()
    rows = [{"run_id": run_id, "name": name, "step": start_step + i, "epoch": (start_step + i) / steps_per_epoch,
             "value": v, "time": t0 + i} for i, v in enumerate(values)]
    with write_tx(engine) as conn:
        write_metrics(conn, rows)


def texts(at: AppTest, kind: str) -> list[str]:
    """The text of every element of one kind (error, warning, info, success, caption, markdown)."""
    return [e.value for e in getattr(at, kind)]
