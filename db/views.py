"""Read-only queries for the dashboard.

Everything here only SELECTs, so it can run as often as the dashboard polls (every ~2 s per open
page) without ever taking SQLite's write lock. Results are plain Python values (dicts, lists of
columns); the dashboard turns them into pandas frames itself, which keeps pandas out of `db/`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, Engine, and_, bindparam, func, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from db.heartbeat import STALE_AFTER_S, is_stale, last_sign_of_life
from db.models import metrics, runs, workers
from db.session import read_tx
from db.status import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, utcnow

# What the dashboard shows instead of the stored status, for runs the stored status misdescribes.
# "dead" uses the limit the run's own worker applies (its --stale-after, stored with the worker),
# so the dashboard never calls "dead" a run its worker would not.
DEAD = "dead"  # stored `running`, but silent for longer than its worker's --stale-after: the worker is gone
CANCELLING = "cancelling"  # stored `running`, cancel requested, not yet stopped
DISPLAY_STATUSES = (QUEUED, RUNNING, CANCELLING, DEAD, COMPLETED, FAILED, CANCELLED)

# The columns a run table needs; `subset_indices` (up to 50,000 ints) is left out on purpose.
SUMMARY_COLUMNS = (
    "id", "name", "status", "config", "dataset", "encoder", "optimizer", "batch_size", "subset_size",
    "epochs", "sweep_id", "created_at", "started_at", "finished_at", "heartbeat_at", "device", "worker_id", "executor",
    "log_path", "checkpoint_path", "attempts", "cancel_requested", "epoch", "step", "total_steps", "phase",
    "final_loss", "knn_top1", "linear_loss", "linear_top1", "error", "tags", "note",
)
METRIC_COLUMNS = ("id", "run_id", "name", "step", "epoch", "value", "time")


def _latest(name: str, column: ColumnElement) -> Any:
    """The newest value of `column` among run's `name` rows: one index probe per run (run_id, name, step)."""
    return (select(column).where(metrics.c.run_id == runs.c.id, metrics.c.name == name)
            .order_by(metrics.c.step.desc()).limit(1).scalar_subquery())


def run_summaries(engine: Engine, *, status: Iterable[str] | None = None, sweep_id: str | None = None,
                  ids: Sequence[int] | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, with their latest loss and accuracies, progress and display status.

    `status` filters on *display* statuses (so "dead" and "cancelling" can be asked for).
    """
    query = select(
        *(runs.c[c] for c in SUMMARY_COLUMNS),
        _latest("train/loss", metrics.c.value).label("latest_loss"),
        _latest("train/loss", metrics.c.step).label("latest_step"),
        _latest("train/loss", metrics.c.epoch).label("latest_epoch"),
        _latest("knn/top1", metrics.c.value).label("latest_knn_top1"),
        _latest("linear/loss", metrics.c.value).label("latest_linear_loss"),
        _latest("linear/top1", metrics.c.value).label("latest_linear_top1"),
        # For a running run's ETA: its current speed and how long its own kNN pass took.
        _latest("train/images_per_sec", metrics.c.value).label("latest_images_per_sec"),
        _latest("time/knn_s", metrics.c.value).label("latest_knn_s"),
        workers.c.stale_after_s,
    ).select_from(runs.outerjoin(workers, runs.c.worker_id == workers.c.id)).order_by(runs.c.id.desc())
    if sweep_id:
        query = query.where(runs.c.sweep_id == sweep_id)
    if ids is not None:
        query = query.where(runs.c.id.in_(list(ids)))
    wanted = set(status) if status else None
    if wanted:
        # Narrow in SQL by the stored statuses the display statuses can come from; refine below.
        stored = {RUNNING if s in (DEAD, CANCELLING) else s for s in wanted}
        query = query.where(runs.c.status.in_(sorted(stored)))
    now = now or utcnow()
    out = []
    with read_tx(engine) as conn:
        for row in conn.execute(query).mappings():
            run = dict(row)
            run["display_status"] = display_status(run, now)
            if wanted and run["display_status"] not in wanted:
                continue
            run["progress"] = progress(run)
            # Summary columns are written at the end of a run; until then the newest metric row stands in.
            for key in ("knn_top1", "linear_loss", "linear_top1"):
                if run[key] is None:
                    run[key] = run[f"latest_{key}"]
            run["duration_s"] = duration_s(run, now)
            run["heartbeat_age_s"] = heartbeat_age_s(run, now)
            out.append(run)
    return out


def heartbeat_age_s(run: dict[str, Any], now: datetime) -> float | None:
    last = last_sign_of_life(run)
    return None if last is None else (now - last).total_seconds()


def display_status(run: dict[str, Any], now: datetime) -> str:
    """The stored status, except that a running run with a stale heartbeat is `dead`.

    A worker that notices the stale run will requeue or fail it; until one does (or when no worker
    is alive at all) the dashboard must not keep saying "running".
    """
    if run["status"] != RUNNING:
        return run["status"]
    if is_stale(run, now):
        return DEAD
    return CANCELLING if run.get("cancel_requested") else RUNNING


# Progress of a run that is not completed stops short of full: after its last step a run still
# evaluates (kNN, linear probe) and may yet fail, so 100 % means done and nothing else.
NOT_DONE_MAX = 0.99


def progress(run: dict[str, Any]) -> float:
    """Fraction done, 0..1: completed runs are full; else steps (or epochs) done over the total,
    at most NOT_DONE_MAX."""
    if run["status"] == COMPLETED:
        return 1.0
    if run.get("total_steps"):
        step = max(run.get("step") or 0, run.get("latest_step") or 0)
        return min(NOT_DONE_MAX, step / run["total_steps"])
    done = max(float(run.get("epoch") or 0), float(run.get("latest_epoch") or 0))
    return min(NOT_DONE_MAX, done / run["epochs"]) if run.get("epochs") else 0.0


def duration_s(run: dict[str, Any], now: datetime) -> float | None:
    start = run.get("started_at")
    if start is None:
        return None
    end = run.get("finished_at") or (now if run["status"] == RUNNING else run.get("heartbeat_at") or now)
    return max(0.0, (end - start).total_seconds())


def sweeps(engine: Engine) -> list[dict[str, Any]]:
    """Sweep ids with their run counts, newest first."""
    query = (select(runs.c.sweep_id, func.count().label("runs"), func.min(runs.c.created_at).label("created_at"))
             .where(runs.c.sweep_id.is_not(None)).group_by(runs.c.sweep_id)
             .order_by(func.min(runs.c.created_at).desc()))
    with read_tx(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def run_ids(engine: Engine, *, sweep_id: str | None = None) -> list[int]:
    query = select(runs.c.id).order_by(runs.c.id.desc())
    if sweep_id:
        query = query.where(runs.c.sweep_id == sweep_id)
    with read_tx(engine) as conn:
        return list(conn.execute(query).scalars())


def run_labels(engine: Engine) -> dict[int, str]:
    """`{id: "#id name"}` for pickers, newest first."""
    query = select(runs.c.id, runs.c.name).order_by(runs.c.id.desc())
    with read_tx(engine) as conn:
        return {rid: f"#{rid} {name}" if name else f"#{rid}" for rid, name in conn.execute(query)}


# ------------------------------------------------------------------------------------- metrics
def metric_columns(engine: Engine, run_ids: Sequence[int], names: Sequence[str], *, after_id: int = 0,
                   max_points: int | None = None) -> dict[str, list[Any]]:
    """Metric rows as columns {id, run_id, name, step, epoch, value, time}, ordered by run, name, step.

    `after_id`: only rows newer than the ones the caller already drew (ids only grow). The query is
    driven by the primary key, so a live chart's poll costs the new rows, not the run's history.
    `max_points`: downsample in the database to about that many rows per (run, name) series; see
    `_sampled_series`. Without either, every row.
    """
    if not run_ids or not names:
        return {c: [] for c in METRIC_COLUMNS}
    cols = [metrics.c[c] for c in METRIC_COLUMNS]
    with read_tx(engine) as conn:
        if max_points:
            rows = []
            for run_id in sorted(run_ids):
                for name in sorted(names):
                    rows.extend(_sampled_series(conn, run_id, name, max_points))
        else:
            query = select(*cols).where(metrics.c.name.in_(list(names)), metrics.c.id > after_id)
            if after_id:
                # The id range must drive this query. `run_id + 0` hides the (run_id, name, step) index
                # from SQLite's planner, and sorting happens here, not in SQL (an ORDER BY matching that
                # index also makes SQLite walk it): otherwise every poll reads the runs' whole history.
                query = query.where((metrics.c.run_id + 0).in_(list(run_ids)))
                rows = sorted(conn.execute(query).all(), key=lambda r: (r.run_id, r.name, r.step))
            else:
                query = query.where(metrics.c.run_id.in_(list(run_ids)))
                rows = conn.execute(query.order_by(metrics.c.run_id, metrics.c.name, metrics.c.step)).all()
    if not rows:
        return {c: [] for c in METRIC_COLUMNS}
    return {c: list(v) for c, v in zip(METRIC_COLUMNS, zip(*rows))}


# Statements built once with bound parameters: SQLAlchemy compiles each once and caches it, which
# matters when one page view runs them for every (run, metric) series.
_SERIES = and_(metrics.c.run_id == bindparam("run_id"), metrics.c.name == bindparam("name"))
_FIRST_STEP = select(metrics.c.step).where(_SERIES).order_by(metrics.c.step).limit(1)
_LAST_STEP = select(metrics.c.step).where(_SERIES).order_by(metrics.c.step.desc()).limit(1)
_WHOLE_SERIES = select(*(metrics.c[c] for c in METRIC_COLUMNS)).where(_SERIES).order_by(metrics.c.step)
_SERIES_AT_STEPS = _WHOLE_SERIES.where(metrics.c.step.in_(bindparam("steps", expanding=True)))


def _sampled_series(conn: Connection, run_id: int, name: str, max_points: int) -> list[Any]:
    """About `max_points` rows of one series: the steps lo, lo+k, lo+2k, ... and the last one.

    Looked up one by one in the (run_id, name, step) index instead of filtering a scan, so 50 runs
    x 10,000 points cost 50 x ~400 index probes, not a walk over 500,000 rows. Series that log
    every step (train/*) hit every probe; a sparse series whose steps the grid mostly misses is
    read whole instead (it is short, or it would not be sparse) and thinned here.
    """
    key = {"run_id": run_id, "name": name}
    lo = conn.execute(_FIRST_STEP, key).scalar()
    if lo is None:
        return []
    hi = conn.execute(_LAST_STEP, key).scalar()
    if hi - lo + 1 <= max_points:
        return conn.execute(_WHOLE_SERIES, key).all()
    stride = -(-(hi - lo + 1) // max_points)
    grid = sorted({*range(lo, hi + 1, stride), hi})
    rows = conn.execute(_SERIES_AT_STEPS, {**key, "steps": grid}).all()
    if len(rows) * 2 < len(grid):
        rows = conn.execute(_WHOLE_SERIES, key).all()
        keep = -(-len(rows) // max_points)
        rows = rows[::keep] + ([rows[-1]] if (len(rows) - 1) % keep else [])
    return rows


def max_metric_id(engine: Engine) -> int:
    """The newest metric id of any run (0 if none): where an incremental reader may start.

    Global on purpose: max(id) over the whole table is one look at the end of the primary key,
    while max(id) of some runs walks all of their rows.
    """
    with read_tx(engine) as conn:
        return conn.execute(select(func.coalesce(func.max(metrics.c.id), 0))).scalar_one()


_NEXT_NAME = (select(metrics.c.name).where(metrics.c.run_id == bindparam("run_id"), metrics.c.name > bindparam("after"))
              .order_by(metrics.c.name).limit(1))


def metric_names(engine: Engine, run_ids: Sequence[int]) -> list[str]:
    """The metric names these runs logged, by a skip scan of the index: per run, the next name
    after the last one found. A handful of index probes per run instead of DISTINCT over every row."""
    found: set[str] = set()
    with read_tx(engine) as conn:
        for run_id in run_ids:
            last = ""
            while True:
                name = conn.execute(_NEXT_NAME, {"run_id": run_id, "after": last}).scalar()
                if name is None:
                    break
                found.add(name)
                last = name
    return sorted(found)


TIMING_METRICS = ("time/epoch_s", "time/knn_s", "time/linear_s", "time/checkpoint_s")


def run_timings(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """What recent completed runs took, phase by phase, for estimates of runs like them.

    Only completed runs of one attempt: a cancelled or failed run stopped part-way, and a retried
    run's duration spans processes. Per run: config, device, duration_s (start to finish), and
    each time/* metric's values in step order (epoch_s: one per epoch, knn_s: one per kNN pass,
    linear_s: one, checkpoint_s: one per epoch), as the trainer measured them.
    """
    recent = (select(runs.c.id, runs.c.config, runs.c.device, runs.c.started_at, runs.c.finished_at)
              .where(runs.c.status == COMPLETED, runs.c.attempts == 1, runs.c.started_at.is_not(None),
                     runs.c.finished_at.is_not(None))
              .order_by(runs.c.id.desc()).limit(limit))
    with read_tx(engine) as conn:
        found = {r.id: {"id": r.id, "config": r.config, "device": r.device,
                        "duration_s": (r.finished_at - r.started_at).total_seconds(),
                        **{name: [] for name in TIMING_METRICS}} for r in conn.execute(recent)}
        if not found:
            return []
        q = (select(metrics.c.run_id, metrics.c.name, metrics.c.value)
             .where(metrics.c.run_id.in_(list(found)), metrics.c.name.in_(TIMING_METRICS))
             .order_by(metrics.c.run_id, metrics.c.name, metrics.c.step))
        for run_id, name, value in conn.execute(q):
            found[run_id][name].append(value)
    # Runs from before the trainer measured its phases have no epoch times: nothing to learn from.
    return [r for r in found.values() if r["time/epoch_s"]]


def newest_epoch(engine: Engine, name: str) -> float | None:
    """The highest epoch of any run's `name` series (bench/twenty_tabs.py watches it grow)."""
    with read_tx(engine) as conn:
        return conn.execute(select(func.max(metrics.c.epoch)).where(metrics.c.name == name)).scalar()


# ------------------------------------------------------------------------------------- workers
WORKER_ALIVE, WORKER_STOPPED, WORKER_LOST = "alive", "stopped", "lost"


def workers_overview(engine: Engine, *, limit: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every live worker and the `limit` most recent stopped or lost ones, live first, each with its runs.

    `state`: alive (heartbeat within its own --stale-after, stored with it), stopped (said goodbye)
    or lost (went silent); `running`: [{id, name, device, step, total_steps}] of the runs it holds now.
    """
    now = now or utcnow()
    unstopped = workers.c.stopped_at.is_(None)
    # Each worker has its own limit; in SQL, keep every worker within the largest of them (the
    # exact state is decided per worker below, by the same rule as runs: db.heartbeat.is_stale).
    widest = select(func.max(func.coalesce(workers.c.stale_after_s, STALE_AFTER_S))).where(unstopped)
    with read_tx(engine) as conn:
        widest_s = conn.execute(widest).scalar() or STALE_AFTER_S
    alive = unstopped & (workers.c.heartbeat_at >= now - timedelta(seconds=widest_s))
    # Every live worker however old, then the newest `limit` of the others (the registry keeps all).
    query = union_all(select(workers).where(alive),
                      select(workers).where(~alive).order_by(workers.c.started_at.desc()).limit(limit).subquery()
                      .select()).subquery()
    query = select(query).order_by(query.c.started_at.desc())
    held = (select(runs.c.id, runs.c.name, runs.c.worker_id, runs.c.device, runs.c.step, runs.c.total_steps,
                   runs.c.epoch, runs.c.epochs)
            .where(runs.c.status == RUNNING).order_by(runs.c.id))
    with read_tx(engine) as conn:
        found = [dict(r) for r in conn.execute(query).mappings()]
        by_worker: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute(held.where(runs.c.worker_id.in_([w["id"] for w in found]))).mappings():
            by_worker.setdefault(r["worker_id"], []).append(dict(r))
    for w in found:
        w["heartbeat_age_s"] = (now - w["heartbeat_at"]).total_seconds()
        w["state"] = (WORKER_STOPPED if w["stopped_at"] else WORKER_LOST if is_stale(w, now) else WORKER_ALIVE)
        w["running"] = by_worker.get(w["id"], [])
    order = {WORKER_ALIVE: 0, WORKER_LOST: 1, WORKER_STOPPED: 2}
    return sorted(found, key=lambda w: order[w["state"]])  # stable: newest first within a state


def queued_in_order(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Queued runs in the order workers will claim them (db.queue.claim_next takes the lowest id)."""
    query = (select(runs.c.id, runs.c.name, runs.c.sweep_id, runs.c.created_at, runs.c.attempts, runs.c.encoder,
                    runs.c.batch_size, runs.c.epochs, runs.c.cancel_requested)
             .where(runs.c.status == QUEUED).order_by(runs.c.id).limit(limit))
    with read_tx(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def all_tags(engine: Engine) -> list[str]:
    """Every tag in use, sorted (for the Runs page's tag filter)."""
    with read_tx(engine) as conn:
        found = conn.execute(select(runs.c.tags).where(runs.c.tags.is_not(None))).scalars()
        return sorted({t for tags in found for t in tags or []})
