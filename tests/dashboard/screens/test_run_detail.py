"""Run detail: the deep link ?run=ID, status and error, curves, log tail, checkpoint download."""

from __future__ import annotations

from sqlalchemy import Engine

from dashboard.screens.run_detail import tail
from db import executor
from db.config import run_dir
from tests.dashboard.dash_helpers import add_metrics, add_run, texts


def test_deep_link_opens_the_run_with_error_curves_log_and_checkpoint(app, db: Engine) -> None:
    add_run(db, status="completed")
    run = add_run(db, status="failed", name="broken", error="loss became NaN at epoch 2 step 40; try a lower learning rate")
    add_metrics(db, run, "train/loss", [3.0, 2.0, float("inf")])
    folder = run_dir(run)
    folder.mkdir(parents=True)
    log = folder / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(1000)) + "Traceback: the end\n")
    ckpt = folder / "checkpoint.pt"
    ckpt.write_bytes(b"x" * 2048)
    from db.queries import update_run

    update_run(db, run, log_path=str(log), checkpoint_path=str(ckpt))
    at = app(run=run)  # the bare address with ?run=ID opens Run detail
    assert at.selectbox[0].value == run
    assert any("broken" in s.value for s in at.subheader)
    assert any("loss became NaN" in e for e in texts(at, "error"))
    assert len(at.get("plotly_chart")) == 1  # the loss chart; the others have no points yet
    code = at.code[0].value
    assert code.endswith("Traceback: the end") and "line 999" in code and "line 0\n" not in code
    assert any("Download checkpoint" in b.label for b in at.get("download_button"))


def test_unknown_run_id_says_so(app, db: Engine) -> None:
    add_run(db)
    at = app(run=999)
    assert any("no run with id 999" in e for e in texts(at, "error"))


def test_picking_another_run_updates_the_link(app, db: Engine) -> None:
    first = add_run(db)
    second = add_run(db)
    at = app("run_detail")
    assert at.query_params["run"] == [str(second)] or at.query_params["run"] == str(second)
    at.selectbox[0].set_value(first).run()
    assert str(first) in str(at.query_params["run"])


def test_dead_run_is_explained(app, db: Engine) -> None:
    run = add_run(db, status="running", heartbeat_age_s=900)
    at = app(run=run)
    assert any("No heartbeat" in e for e in texts(at, "error"))
    assert "dead" in at.markdown[0].value or any("dead" in m.value for m in at.markdown)


def test_tail_reads_only_the_end(tmp_path) -> None:  # noqa: ANN001
    log = tmp_path / "log.txt"
    log.write_text("x" * 1_000_000 + "\nlast line\n")
    assert tail(str(log), max_bytes=100).endswith("last line")
    assert tail(str(tmp_path / "missing.txt")) is None


def test_where_the_run_executes_with_a_link_to_its_ray_job(app, db: Engine) -> None:
    where = executor.ray_job("simclr-run1-attempt1-0123abcd", "10.0.0.7", "http://head:8265")
    run = add_run(db, status="running", executor=where)
    at = app(run=run)
    line = next(m.value for m in at.markdown if "Executes on" in m.value)
    assert "ray job simclr-run1-attempt1-0123abcd on node 10.0.0.7" in line
    assert "[Ray dashboard](http://head:8265/#/jobs/simclr-run1-attempt1-0123abcd)" in line
    assert any("output is saved here when the job ends" in c.value for c in at.caption)
    local = add_run(db, status="running", executor=executor.local_worker("box", 42, [0], "cuda:0"))
    line = next(m.value for m in app(run=local).markdown if "Executes on" in m.value)
    assert "worker box:42 slot 0 (cuda:0)" in line and "Ray dashboard" not in line
