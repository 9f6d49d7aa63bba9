"""Runs page: table, filters, dead runs, cancel / clone / delete, live curves that read only new rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sqlalchemy import Engine, func, select

from db.config import run_dir
from db.identity import database_id
from db.models import metrics
from db.queries import get_run, list_runs
from tests.dashboard.dash_helpers import add_metrics, add_run, texts


def _table(at):  # noqa: ANN001, ANN202
    return at.dataframe[0].value


def _select(at, *positions: int):  # noqa: ANN001, ANN202
    """Click rows, as the browser does: positions in the table as drawn."""
    version = at.session_state["runs_table_snapshot"]["version"]
    at.session_state[f"runs_table_{version}"] = {"selection": {"rows": list(positions), "columns": []}}
    return at.run()


def test_table_shows_status_progress_and_results(app, db: Engine) -> None:
    done = add_run(db, status="completed", name="done", knn_top1=0.41, linear_loss=0.9, linear_top1=0.55)
    running = add_run(db, status="running", total_steps=100, step=25,
                      executor="ray job simclr-run2-attempt1-0123abcd on node 10.0.0.7 · dashboard http://head:8265")
    add_metrics(db, running, "train/loss", [5.0, 4.5, 4.0])
    queued = add_run(db)
    table = _table(app("runs")).set_index("id")
    assert list(table.index) == [queued, running, done]  # newest first
    assert table.loc[done, "status"] == "completed" and table.loc[done, "progress"] == 1.0
    assert table.loc[done, "linear top-1"] == 0.55 and table.loc[done, "kNN top-1"] == 0.41
    assert table.loc[running, "progress"] == 0.25 and table.loc[running, "loss"] == 4.0
    assert table.loc[queued, "status"] == "queued" and table.loc[queued, "progress"] == 0.0
    assert table.loc[done, "open"] == f"run?run={done}"
    assert table.loc[running, "executor"] == "ray job simclr-run2-attempt1-0123abcd on node 10.0.0.7"
    assert table.loc[queued, "executor"] == ""


def test_a_run_without_heartbeat_is_dead_not_running(app, db: Engine) -> None:
    alive = add_run(db, status="running", heartbeat_age_s=2)
    dead = add_run(db, status="running", heartbeat_age_s=600)
    table = _table(app("runs")).set_index("id")
    assert table.loc[alive, "status"] == "running"
    assert table.loc[dead, "status"] == "dead"


def test_filters_by_status_and_sweep(app, db: Engine) -> None:
    a = add_run(db, status="completed", sweep_id="sweep-a")
    b = add_run(db, status="failed", sweep_id="sweep-a")
    c = add_run(db, status="completed")
    dead = add_run(db, status="running", heartbeat_age_s=600)
    at = app("runs")
    at.multiselect(key="runs_status_filter").set_value(["completed"]).run()
    assert set(_table(at)["id"]) == {a, c}
    at.multiselect(key="runs_status_filter").set_value(["dead"]).run()
    assert set(_table(at)["id"]) == {dead}
    at.multiselect(key="runs_status_filter").set_value([]).run()
    at.selectbox(key="runs_sweep_filter").set_value("sweep-a").run()
    assert set(_table(at)["id"]) == {a, b}


def test_cancel_selected_run(app, db: Engine) -> None:
    first = add_run(db)
    second = add_run(db)
    at = _select(app("runs"), 1)  # second row = the older run
    at.button(key="runs_cancel").click().run()
    assert get_run(db, first)["status"] == "cancelled"
    assert get_run(db, second)["status"] == "queued"
    assert any("cancelled" in t for t in texts(at, "success"))


def test_selection_follows_the_run_when_rows_shift(app, db: Engine) -> None:
    """A run inserted above the selection must not steal it (selections are row positions)."""
    old = add_run(db)
    at = _select(app("runs"), 0)
    newer = add_run(db)  # now at position 0
    at.run()
    at.button(key="runs_cancel").click().run()
    assert get_run(db, old)["status"] == "cancelled"
    assert get_run(db, newer)["status"] == "queued"


def test_clone_opens_the_launch_form_with_the_config(app, db: Engine) -> None:
    add_run(db, batch_size=128, subset_size=500, epochs=3, optimizer="adam")
    at = _select(app("runs"), 0)
    at.button(key="runs_clone").click().run()
    assert at.text_input(key="lf_batch_size").value == "128"
    assert at.text_input(key="lf_subset_size").value == "500"
    assert at.selectbox(key="lf_optimizer").value == "adam"
    at.button(key="launch_button").click().run()
    assert len(list_runs(db)) == 2


def test_delete_asks_then_removes_run_metrics_and_files(app, db: Engine) -> None:
    keep = add_run(db, status="completed")
    doomed = add_run(db, status="completed")
    add_metrics(db, doomed, "train/loss", [1.0, 0.9])
    folder = run_dir(doomed, database_id(db))
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("log")
    (folder / "checkpoint.pt").write_bytes(b"ckpt")
    at = _select(app("runs"), 0)
    at.button(key="runs_delete").click().run()
    assert any("cannot be undone" in w for w in texts(at, "warning"))
    at.button(key="runs_delete_keep").click().run()
    assert get_run(db, doomed) is not None  # "keep them" deletes nothing
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert get_run(db, doomed) is None and get_run(db, keep) is not None
    with db.connect() as conn:
        assert conn.execute(select(func.count()).where(metrics.c.run_id == doomed)).scalar_one() == 0
    assert not folder.exists()
    assert list(_table(at)["id"]) == [keep]


def test_a_live_run_is_not_deleted(app, db: Engine) -> None:
    run = add_run(db, status="running", heartbeat_age_s=1)
    at = _select(app("runs"), 0)
    assert at.button(key="runs_delete").disabled  # cancel it first
    assert not at.button(key="runs_cancel").disabled and at.button(key="runs_resume").disabled
    assert get_run(db, run) is not None


def test_actions_that_cannot_apply_are_disabled_and_resume_requeues(app, db: Engine) -> None:
    cancelled = add_run(db, status="cancelled", error="cancelled by request")
    failed = add_run(db, status="failed", error="boom")
    done = add_run(db, status="completed")
    at = app("runs")
    at = _select(at, 0)  # the completed run: nothing to cancel or resume
    assert at.button(key="runs_cancel").disabled and at.button(key="runs_resume").disabled
    assert not at.button(key="runs_delete").disabled and not at.button(key="runs_clone").disabled
    at = _select(at, 0, 1, 2)
    assert at.button(key="runs_cancel").disabled  # none of them is queued or running
    resume = at.button(key="runs_resume")
    assert not resume.disabled and resume.label == "Resume (2)"
    resume.click().run()
    assert get_run(db, failed)["status"] == "queued" and get_run(db, cancelled)["status"] == "queued"
    assert get_run(db, done)["status"] == "completed"
    said = " ".join(texts(at, "success"))
    assert f"run {failed} queued to resume" in said and f"run {cancelled} queued to resume" in said


def test_running_runs_show_phase_and_eta_and_the_column_chooser_hides_columns(app, db: Engine) -> None:
    from sqlalchemy import update

    from db.models import runs
    from db.session import write_tx

    run = add_run(db, status="running", total_steps=100, step=100)
    with write_tx(db) as conn:
        conn.execute(update(runs).where(runs.c.id == run).values(phase="kNN", epoch=1))
    at = app("runs")
    table = _table(at).set_index("id")
    assert table.loc[run, "phase"] == "kNN" and table.loc[run, "ETA"] != ""
    assert table.loc[run, "progress"] < 1.0  # training is done, the run is not
    frame = at.dataframe[0]
    assert "sweep" not in frame.proto.column_order and "loss" in frame.proto.column_order
    at.multiselect(key="runs_columns").set_value(["id", "name", "sweep"]).run()
    assert list(at.dataframe[0].proto.column_order) == ["id", "name", "sweep"]


def test_live_curves_gain_points_reading_only_new_rows(app, db: Engine) -> None:
    run = add_run(db, status="running", total_steps=1000)
    add_metrics(db, run, "train/loss", [5.0 - i * 0.01 for i in range(50)])
    add_metrics(db, run, "knn/top1", [0.2], start_step=10)
    at = app("runs")  # running runs are drawn without selecting them
    assert len(at.get("plotly_chart")) == 2
    cache = at.session_state["runs_curves"]
    assert len(cache.frame) == 51
    seen = cache.last_id
    add_metrics(db, run, "train/loss", [4.0, 3.9], start_step=51)
    at.run()
    cache = at.session_state["runs_curves"]
    assert len(cache.frame) == 53 and cache.last_id > seen
    assert cache.frame[cache.frame["name"] == "train/loss"]["step"].max() == 52


def test_empty_database_points_to_launch(app, db: Engine) -> None:
    at = app("runs")
    assert any("No runs here yet" in t for t in texts(at, "info"))


def test_a_run_no_live_worker_has_the_gpus_for_is_pointed_out(app, db: Engine) -> None:
    from db.queue import register_worker

    register_worker(db, "gpu-box", hostname="h", pid=1, slots=2, devices="cuda:0,cuda:1")
    big = add_run(db, devices=4)
    add_run(db, devices=2)
    at = app("runs")
    [warning] = [w for w in texts(at, "warning") if "more GPUs" in w]
    assert f"run {big} asks for more GPUs than any live worker has (at most 2 each)" in warning


def test_dead_run_folder_path_outside_runs_root_is_left_alone(app, db: Engine, tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    add_run(db, status="failed", log_path=str(outside))
    at = _select(app("runs"), 0)
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert list_runs(db) == [] and outside.exists()


def test_disk_use_is_shown_and_checkpoints_can_be_discarded(app, db: Engine) -> None:
    run = add_run(db, status="completed")
    folder = run_dir(run, database_id(db))
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(os.urandom(3_000_000))
    at = app("runs")
    assert any("3.0 MB on disk" in c for c in texts(at, "caption"))  # the total, whatever the columns
    assert "disk MB" not in at.dataframe[0].proto.column_order  # per run: in the column chooser
    at.multiselect(key="runs_columns").set_value(["id", "name", "disk MB"]).run()
    assert list(at.dataframe[0].proto.column_order) == ["id", "name", "disk MB"]
    assert at.dataframe[0].value["disk MB"].iloc[0] == pytest.approx(3.0, abs=0.1)
    at = _select(at, 0)
    at.button(key="runs_discard").click().run()
    assert not (folder / "checkpoint.pt").exists()
    assert any("checkpoint discarded (3.0 MB freed)" in i for i in texts(at, "success"))


def test_disk_command_lists_use_and_discards(db: Engine, capsys: pytest.CaptureFixture) -> None:
    from engine.jobs.cli import main

    run = add_run(db, status="failed")
    folder = run_dir(run, database_id(db))
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(os.urandom(2_000_000))
    assert main(["disk"]) == 0
    out = capsys.readouterr().out
    assert "2.0 MB" in out and "total: 2.0 MB" in out
    assert main(["disk", "--discard-finished"]) == 0
    assert "checkpoint discarded" in capsys.readouterr().out and not (folder / "checkpoint.pt").exists()
