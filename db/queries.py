"""Queries the engine, the workers and the dashboard share."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from db.config import RunConfig
from db.models import metrics, runs
from db.session import read_tx, write_tx
from db.status import PHASES, QUEUED, RUNNING, utcnow


def run_values(cfg: RunConfig, *, name: str | None = None, sweep_id: str | None = None,
               retries: int = 1) -> dict[str, Any]:
    """The row for a new queued run of `cfg` (validated already: RunConfig cannot be invalid)."""
    return dict(
        name=name, status=QUEUED, config=cfg.to_dict(), dataset=cfg.dataset, encoder=cfg.encoder,
        optimizer=cfg.optimizer, batch_size=cfg.batch_size, subset_size=cfg.subset_size, epochs=cfg.epochs,
        sweep_id=sweep_id, created_at=utcnow(), attempts=0, retries_left=retries, cancel_requested=False,
        epoch=0, step=0,
    )


def create_runs(engine: Engine, configs: Sequence[RunConfig], *, names: Sequence[str | None] | None = None,
                sweep_id: str | None = None, retries: int = 1) -> list[int]:
    """Insert queued runs, all or none, in one transaction; returns their ids in order."""
    names = list(names) if names is not None else [None] * len(configs)
    ids = []
    with write_tx(engine) as conn:
        for cfg, name in zip(configs, names):
            ids.append(conn.execute(insert(runs).values(**run_values(cfg, name=name, sweep_id=sweep_id,
                                                                      retries=retries))).inserted_primary_key[0])
    return ids


def create_run(engine: Engine, cfg: RunConfig, *, name: str | None = None, retries: int = 1) -> int:
    return create_runs(engine, [cfg], names=[name], retries=retries)[0]


def get_run(conn_or_engine: Connection | Engine, run_id: int) -> dict[str, Any] | None:
    if isinstance(conn_or_engine, Engine):
        with read_tx(conn_or_engine) as conn:
            return get_run(conn, run_id)
    row = conn_or_engine.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    return dict(row) if row else None


def list_runs(engine: Engine, *, status: Iterable[str] | None = None, sweep_id: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
    query = select(runs).order_by(runs.c.id.desc())
    if status:
        query = query.where(runs.c.status.in_(list(status)))
    if sweep_id:
        query = query.where(runs.c.sweep_id == sweep_id)
    if limit:
        query = query.limit(limit)
    with read_tx(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def update_run(engine: Engine, run_id: int, **values: Any) -> None:
    """Set plain columns (progress, summary, paths). Status changes go through db.status.transition."""
    assert "status" not in values, "use db.status.transition to change a status"
    with write_tx(engine) as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


def set_phase(engine: Engine, run_id: int, phase: str) -> None:
    """Record what the running run does now (db.status.PHASES); only while it is running."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r} (known: {', '.join(PHASES)})")
    with write_tx(engine) as conn:
        conn.execute(update(runs).where(runs.c.id == run_id, runs.c.status == RUNNING).values(phase=phase))


def _upsert(conn: Connection):  # noqa: ANN202
    """INSERT ... ON CONFLICT (run_id, name, step) DO UPDATE, for the backend in use."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(metrics)
    return stmt.on_conflict_do_update(
        index_elements=[metrics.c.run_id, metrics.c.name, metrics.c.step],
        set_={"value": stmt.excluded.value, "epoch": stmt.excluded.epoch, "time": stmt.excluded.time},
    )


def write_metrics(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Write metric rows {run_id, name, step, epoch, value, time} in one executemany."""
    if rows:
        conn.execute(_upsert(conn), list(rows))


def write_progress(engine: Engine, run_id: int, rows: Sequence[dict[str, Any]], progress: Mapping[str, Any]) -> None:
    """A live run's flush: metric rows, and its progress columns (epoch, step, ...) with a heartbeat,
    in one transaction."""
    with write_tx(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Don't wait for the server's WAL flush (~8 ms a commit, >1% of a fast GPU step).
            # Only a crash of the database server itself can lose the last fraction of a
            # second of metric rows; the database stays consistent either way.
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        write_metrics(conn, rows)
        if progress:
            conn.execute(update(runs).where(runs.c.id == run_id).values(heartbeat_at=utcnow(), **progress))


def record_start(engine: Engine, run_id: int, *, total_steps: int, device: str,
                 subset_indices: list[int] | None) -> None:
    """What a run's process knows once its data is loaded. `device` fills in only where the claim set
    none: a worker's slot label (e.g. the physical GPU) wins over this process's view of it."""
    update_run(engine, run_id, total_steps=total_steps, device=func.coalesce(runs.c.device, device),
               subset_indices=subset_indices)


# Device-use samples (engine/jobs/sysmon.py) are numbered by sample, not by training step, and record
# wall-clock facts that a resumed run does not replay: they are never dropped on resume.
SYSTEM_PREFIX = "sys/"
SYS_CPU, SYS_MEMORY, SYS_GPU_UTIL, SYS_GPU_MEMORY = (f"{SYSTEM_PREFIX}{n}" for n in
                                                     ("cpu_percent", "memory_mb", "gpu_util", "gpu_memory_mb"))


def delete_metrics_after(engine: Engine, run_id: int, step: int) -> int:
    """Drop rows logged after `step` (the last checkpoint) before a resumed run replays them."""
    with write_tx(engine) as conn:
        return conn.execute(delete(metrics).where(metrics.c.run_id == run_id, metrics.c.step > step,
                                                  ~metrics.c.name.startswith(SYSTEM_PREFIX))).rowcount


def next_metric_step(engine: Engine, run_id: int, name: str) -> int:
    """One past the highest step of a series (0 when empty): where a resumed sample counter goes on."""
    query = select(func.coalesce(func.max(metrics.c.step) + 1, 0)).where(metrics.c.run_id == run_id,
                                                                         metrics.c.name == name)
    with read_tx(engine) as conn:
        return conn.execute(query).scalar_one()


def metric_rows(engine: Engine, run_ids: Sequence[int], names: Sequence[str] | None = None, *,
                after_id: int = 0) -> list[dict[str, Any]]:
    """Metric rows of `run_ids` (optionally only `names`), ordered by run, name, step.

    With `after_id` (a live poll: only rows newer than those already seen) they come in id
    order, which is arrival order. "+ 0" and ORDER BY id keep SQLite's planner off the
    (run_id, name, step) index, which would read every row of the runs to find the few new ones;
    walking the primary key from after_id reads just those.
    """
    if after_id:
        query = (select(metrics).where((metrics.c.run_id + 0).in_(list(run_ids)), metrics.c.id > after_id)
                 .order_by(metrics.c.id))
    else:
        query = (select(metrics).where(metrics.c.run_id.in_(list(run_ids)))
                 .order_by(metrics.c.run_id, metrics.c.name, metrics.c.step))
    if names:
        query = query.where(metrics.c.name.in_(list(names)))
    with read_tx(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def count_metrics(engine: Engine, run_id: int) -> dict[str, int]:
    query = select(metrics.c.name, func.count()).where(metrics.c.run_id == run_id).group_by(metrics.c.name)
    with read_tx(engine) as conn:
        return {name: n for name, n in conn.execute(query)}
