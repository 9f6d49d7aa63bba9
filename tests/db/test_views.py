"""db/views.py on SQLite and PostgreSQL (the dashboard's read side)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, update

from dashboard import charts
from db import views
from db.heartbeat import STALE_AFTER_S
from db.models import workers
from db.queue import heartbeat, live_workers, register_worker
from db.session import make_engine, write_tx
from db.status import utcnow
from tests.dashboard.dash_helpers import add_metrics, add_run


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_metric_columns_downsamples_in_sql_and_keeps_the_newest_point(engine: Engine) -> None:
    a, b = add_run(engine), add_run(engine)
    add_metrics(engine, a, "train/loss", [float(i) for i in range(10_000)])
    add_metrics(engine, b, "train/loss", [float(i) for i in range(37)])
    add_metrics(engine, a, "knn/top1", [0.1, 0.2, 0.3], start_step=100)
    cols = views.metric_columns(engine, [a, b], ["train/loss", "knn/top1"], max_points=500)
    df = charts.frame(cols)
    loss_a = df[(df.run_id == a) & (df.name == "train/loss")]
    assert 450 <= len(loss_a) <= 501 and loss_a["step"].iloc[0] == 1 and loss_a["step"].iloc[-1] == 10_000
    assert loss_a["step"].is_monotonic_increasing
    assert len(df[df.run_id == b]) == 37 and len(df[df.name == "knn/top1"]) == 3  # short series untouched
    full = views.metric_columns(engine, [a], ["train/loss"])
    assert len(full["id"]) == 10_000


def test_metric_columns_after_id_reads_only_new_rows(engine: Engine) -> None:
    run = add_run(engine)
    add_metrics(engine, run, "train/loss", [1.0, 2.0])
    last = views.max_metric_id(engine)
    add_metrics(engine, run, "train/loss", [3.0], start_step=3)
    new = views.metric_columns(engine, [run], ["train/loss"], after_id=last)
    assert new["value"] == [3.0] and new["step"] == [3]


def test_run_summaries_progress_latest_values_and_dead_runs(engine: Engine) -> None:
    live = add_run(engine, status="running", total_steps=40, step=10, heartbeat_age_s=1)
    add_metrics(engine, live, "train/loss", [4.0, 3.5])
    add_metrics(engine, live, "knn/top1", [0.3, 0.35], start_step=5)
    dead = add_run(engine, status="running", heartbeat_age_s=STALE_AFTER_S + 5, epochs=4)
    add_metrics(engine, dead, "train/loss", [4.0], start_step=20, steps_per_epoch=10)  # epoch 2.0 of 4
    cancelling = add_run(engine, status="running", cancel_requested=True)
    by_id = {r["id"]: r for r in views.run_summaries(engine)}
    assert by_id[live]["display_status"] == "running" and by_id[live]["progress"] == 0.25
    assert by_id[live]["latest_loss"] == 3.5 and by_id[live]["knn_top1"] == 0.35
    assert by_id[dead]["display_status"] == "dead" and by_id[dead]["progress"] == 0.5
    assert by_id[cancelling]["display_status"] == "cancelling"
    assert [r["id"] for r in views.run_summaries(engine, status=["dead"])] == [dead]


def test_display_status_boundaries() -> None:
    now = utcnow()
    fresh = {"status": "running", "heartbeat_at": now - timedelta(seconds=STALE_AFTER_S - 1)}
    stale = {"status": "running", "heartbeat_at": now - timedelta(seconds=STALE_AFTER_S + 1)}
    assert views.display_status(fresh, now) == "running"
    assert views.display_status(stale, now) == "dead"
    assert views.display_status({"status": "completed", "heartbeat_at": None}, now) == "completed"


def test_dead_uses_the_stale_after_of_the_runs_own_worker(engine: Engine) -> None:
    """A worker started with --stale-after 300 does not recover a run silent for 100 s: neither does the
    dashboard call it dead. A run of a worker with the default limit is dead by then."""
    register_worker(engine, "patient", hostname="h", pid=1, slots=1, devices="cpu", stale_after_s=300.0)
    register_worker(engine, "default", hostname="h", pid=2, slots=1, devices="cpu")
    patient = add_run(engine, status="running", worker_id="patient", heartbeat_age_s=100)
    default = add_run(engine, status="running", worker_id="default", heartbeat_age_s=100)
    by_id = {r["id"]: r for r in views.run_summaries(engine)}
    assert by_id[patient]["display_status"] == "running" and by_id[default]["display_status"] == "dead"
    # The same limit decides which workers count as alive (the dashboard's local-worker check).
    for worker_id in ("patient", "default"):
        heartbeat(engine, worker_id, [])
    with write_tx(engine) as conn:
        conn.execute(update(workers).values(heartbeat_at=utcnow() - timedelta(seconds=100)))
    assert [w["id"] for w in live_workers(engine)] == ["patient"]
    # ... and which the Workers page calls alive or lost.
    assert {w["id"]: w["state"] for w in views.workers_overview(engine)} == {"patient": "alive", "default": "lost"}


def test_sweeps_and_run_timings_of_completed_single_attempt_runs(engine: Engine) -> None:
    r = add_run(engine, status="completed", sweep_id="s1", attempts=1)
    add_run(engine, sweep_id="s1")
    cancelled = add_run(engine, status="cancelled", attempts=1)
    retried = add_run(engine, status="completed", attempts=2)
    for run_id in (r, cancelled, retried):
        add_metrics(engine, run_id, "time/epoch_s", [10.0, 12.0])
        add_metrics(engine, run_id, "time/knn_s", [3.0])
    assert [(s["sweep_id"], s["runs"]) for s in views.sweeps(engine)] == [("s1", 2)]
    [timing] = views.run_timings(engine)  # not the cancelled run, nor the retried one
    assert timing["id"] == r and timing["time/epoch_s"] == [10.0, 12.0] and timing["time/knn_s"] == [3.0]
    assert timing["time/linear_s"] == [] and timing["config"]["encoder"] == "resnet18"
    assert timing["duration_s"] == pytest.approx(60.0, abs=1.0)


def test_workers_overview_and_queue_order(engine: Engine) -> None:
    from db.queue import register_worker, worker_stopped
    from db.models import workers
    from db.session import write_tx
    from sqlalchemy import update

    register_worker(engine, "old", hostname="h1", pid=1, slots=1, devices="cpu")
    worker_stopped(engine, "old")
    register_worker(engine, "silent", hostname="h2", pid=2, slots=2, devices="cuda:0,cuda:1")
    with write_tx(engine) as conn:
        conn.execute(update(workers).where(workers.c.id == "silent")
                     .values(heartbeat_at=utcnow() - timedelta(seconds=600)))
    register_worker(engine, "live", hostname="h3", pid=3, slots=1, devices="cpu")
    running = add_run(engine, status="running", worker_id="live", device="cpu", name="busy")
    q2, q1 = add_run(engine), add_run(engine)
    got = views.workers_overview(engine)
    assert [(w["id"], w["state"]) for w in got] == [("live", "alive"), ("silent", "lost"), ("old", "stopped")]
    assert [r["id"] for r in got[0]["running"]] == [running] and got[1]["running"] == []
    # Live workers always; of the others only the newest `limit`.
    assert [w["id"] for w in views.workers_overview(engine, limit=1)] == ["live", "silent"]
    assert [r["id"] for r in views.queued_in_order(engine)] == [q2, q1]  # lowest id is claimed first


def test_summaries_carry_tags_and_note(engine: Engine) -> None:
    from db.annotations import set_note, update_tags

    run = add_run(engine)
    update_tags(engine, run, add=["x"])
    set_note(engine, run, "why")
    got = views.run_summaries(engine, ids=[run])[0]
    assert got["tags"] == ["x"] and got["note"] == "why"
