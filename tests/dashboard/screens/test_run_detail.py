"""Run detail: the deep link ?run=ID, status and error, curves, log tail, checkpoint download."""

from __future__ import annotations

from sqlalchemy import Engine

from dashboard.screens.run_detail import tail
from db.config import run_dir
from tests.dashboard.dash_helpers import add_metrics, add_run, texts


def test_deep_link_opens_the_run_with_error_curves_log_and_checkpoint(app, db: Engine) -> None:
    add_run(db, status="completed")
    run = add_run(db, status="failed", name="broken", error="loss became NaN at epoch 2 step 40; try a lower learning rate")
    add_metrics(db, run, "train/loss", [3.0, 2.0, float("inf")])
    folder = run_dir(run)
    folder.mkdir(parents=True)
    log = folder / "log.txt"
    frames = "".join(f'  File "engine/x.py", line {i}, in f{i}\n    call()\n' for i in range(40))
    log.write_text("".join(f"line {i}\n" for i in range(1000)) + "Traceback (most recent call last):\n" + frames
                   + "FloatingPointError: loss became NaN\nrun 2 failed: the end\n")
    ckpt = folder / "checkpoint.pt"
    ckpt.write_bytes(b"x" * 2048)
    from db.queries import update_run

    update_run(db, run, log_path=str(log), checkpoint_path=str(ckpt))
    at = app(run=run)  # the bare address with ?run=ID opens Run detail
    assert at.selectbox[0].value == run
    assert any("broken" in s.value for s in at.subheader)
    assert any("loss became NaN" in e for e in texts(at, "error"))
    # The one-line error, and below it the end of the traceback, folded: the innermost frames and the exception.
    trace = at.expander[0]
    assert trace.label.startswith("Traceback")
    shown = trace.code[0].value
    assert shown.startswith("Traceback (most recent call last):") and shown.endswith("FloatingPointError: loss became NaN")
    assert "in f39" in shown and "in f0\n" not in shown and "lines of outer frames left out" in shown
    assert len(shown.splitlines()) <= 30
    import json

    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    # Four charts in place either way: the loss chart, and three frames that say they have no points yet.
    empty = [s for s in specs if any(a.get("text") == "no points yet" for a in s["layout"].get("annotations", []))]
    assert len(specs) == 4 and len(empty) == 3
    code = at.code[-1].value  # the log, folded too (the run has ended)
    assert code.endswith("run 2 failed: the end") and "line 999" in code and "line 0\n" not in code
    assert at.button(key="detail_cancel").disabled and not at.button(key="detail_resume").disabled
    at.button(key="detail_resume").click().run()
    from db.queries import get_run

    assert get_run(db, run)["status"] == "queued"
    assert any("queued to resume" in t for t in texts(at, "success"))
    # Prepared when asked, then an ordinary download of bytes in hand (not a deferred callable).
    at.button(key="detail_checkpoint_prepare").click().run()
    assert any("Download checkpoint" in b.label for b in at.get("download_button"))
    assert at.session_state["detail_checkpoint"][1] == b"x" * 2048


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
