"""Workers page: the workers with their runs and heartbeats, the queue in order, device use."""

from __future__ import annotations

from sqlalchemy import Engine

from db.queries import update_run, write_metrics
from db.queue import register_worker
from db.session import write_tx
from tests.dashboard.dash_helpers import add_run, texts


def test_lists_workers_queue_and_device_use(app, db: Engine) -> None:
    register_worker(db, "hostA:41:1", hostname="hostA", pid=41, slots=2, devices="cuda:0,cuda:1")
    running = add_run(db, status="running", worker_id="hostA:41:1", name="busy one")
    update_run(db, running, device="cuda:1")  # the worker's slot label (add_run's device= is the config's)
    first, second = add_run(db, name="next"), add_run(db, name="after")
    with write_tx(db) as conn:
        write_metrics(conn, [{"run_id": running, "name": n, "step": s, "epoch": 0.0, "value": v, "time": 1e9 + 5 * s}
                             for s in range(3) for n, v in (("sys/gpu_util", 80.0), ("sys/gpu_memory_mb", 900.0),
                                                           ("sys/cpu_percent", 100.0))])
    at = app("workers")
    workers = at.dataframe[0].value
    assert workers["worker"].tolist() == ["hostA:41:1"] and workers["state"].tolist() == ["alive"]
    row = workers.iloc[0]
    assert (row["host"], row["pid"], row["devices"], row["busy"]) == ("hostA", 41, "cuda:0,cuda:1", "1/2")
    assert f"#{running} busy one on cuda:1" in row["running"] and "ago" in row["last heartbeat"]
    queue = at.dataframe[1].value
    assert queue["id"].tolist() == [first, second] and queue["position"].tolist() == [1, 2]
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # utilization and memory
    assert "GPU %" in charts[0].proto.spec and "GPU MB" in charts[1].proto.spec


def test_no_workers_says_how_to_start_one(app, db: Engine) -> None:
    at = app("workers")
    assert any("python -m engine worker" in t for t in texts(at, "info"))
    assert any("Nothing is queued" in t for t in texts(at, "caption"))
