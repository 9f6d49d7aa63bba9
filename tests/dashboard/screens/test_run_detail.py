"""Run detail: the deep link ?run=ID, status and error, curves, log tail, checkpoint download."""

from __future__ import annotations

from sqlalchemy import Engine

from dashboard.screens.run_detail import tail
from db import executor
from db.config import run_dir, runs_root
from db.identity import database_id
from tests.dashboard.dash_helpers import add_metrics, add_run, texts


def test_deep_link_opens_the_run_with_error_curves_log_and_checkpoint(app, db: Engine) -> None:
    add_run(db, status="completed")
    run = add_run(db, status="failed", name="broken", error="loss became NaN at epoch 2 step 40; try a lower learning rate")
    add_metrics(db, run, "train/loss", [3.0, 2.0, float("inf")])
    folder = run_dir(run, database_id(db))
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
    assert any("broken" in h.proto.body for h in at.get("html"))
    assert any("loss became NaN" in e for e in texts(at, "error"))
    # The one-line error, and below it the end of the traceback, folded: the innermost frames and the exception.
    [trace] = [e for e in at.expander if e.label.startswith("Traceback")]
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


def test_tail_reads_only_the_end() -> None:
    log = runs_root() / "log.txt"
    log.parent.mkdir(parents=True)
    log.write_text("x" * 1_000_000 + "\nlast line\n")
    assert tail(str(log), max_bytes=100).endswith("last line")
    assert tail(str(runs_root() / "missing.txt")) is None


def test_a_run_parameter_that_is_not_a_number_is_refused_calmly(app, db: Engine) -> None:
    add_run(db)
    at = app(run="²")  # a digit to Python's isdigit, not to int()
    assert any("no run with id ²" in e for e in texts(at, "error"))


def test_log_and_checkpoint_outside_the_runs_folder_are_never_read(app, db: Engine, tmp_path) -> None:  # noqa: ANN001
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$hash")
    run = add_run(db, status="failed", log_path=str(secret), checkpoint_path=str(secret))
    at = app(run=run)
    assert not any("root:" in c.value for c in at.code)
    assert not at.get("download_button")
    assert tail(str(secret)) is None


def test_a_corrupt_database_is_one_line_on_the_page(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import APP

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("SIMCLR_DB", f"sqlite:///{corrupt}")
    monkeypatch.setenv("SIMCLR_NO_LOCAL_WORKER", "1")
    monkeypatch.delenv("SIMCLR_PASSWORD", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert any("cannot be used: file is not a database" in e for e in texts(at, "error"))


def fake_insights(k: int = 3, q: int = 2, size: int = 8) -> dict:
    """The arrays engine/simclr/insights.py stores, with made-up values (the page only lays them out)."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = lambda *shape: rng.integers(0, 255, (*shape, size, size, 3), dtype=np.uint8)  # noqa: E731
    return {
        "query_index": np.arange(q), "query_label": np.arange(q), "query_images": images(q),
        "bank_index": np.arange(50), "classes": np.array(["cat", "dog"]), "k": np.array(k),
        **{f"{n}_{part}": value for n in ("trained", "untrained") for part, value in (
            ("index", rng.integers(0, 50, (q, k))), ("similarity", np.ones((q, k))),
            ("label", np.array([[0] * k, [1] * k]) if n == "trained" else np.zeros((q, k), int)),
            ("images", images(q, k)))},
        "map_xy": rng.normal(size=(20, 2)), "map_explained": np.array([0.3, 0.1]),
        "map_index": np.arange(20), "map_label": np.arange(20) % 2,
    }


def test_finished_run_shows_files_encoder_snippet_and_what_it_learned(app, db: Engine) -> None:
    import json

    import numpy as np

    from db.config import CHECKPOINT_INFO_FILE, ENCODER_FILE, ENCODER_INFO_FILE, INSIGHTS_FILE
    from db.queries import update_run

    run = add_run(db, status="completed", name="![x](http://evil.example/i.png)")
    folder = run_dir(run, database_id(db))
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"c" * 3_000_000)
    (folder / CHECKPOINT_INFO_FILE).write_text(json.dumps({"epoch": 2, "step": 20, "saved_at": 1.8e9}))
    (folder / ENCODER_FILE).write_bytes(b"e" * 1000)
    (folder / ENCODER_INFO_FILE).write_text(json.dumps({"encoder": "resnet18", "stem": "cifar", "feature_dim": 512,
                                                        "image_size": 32, "mean": [0.1] * 3, "std": [0.2] * 3,
                                                        "epoch": 2, "step": 20, "saved_at": 1.8e9}))
    np.savez(folder / INSIGHTS_FILE, **fake_insights())
    update_run(db, run, checkpoint_path=str(folder / "checkpoint.pt"))
    at = app(run=run)
    # The name is shown literally: escaped for Markdown, so no image is fetched.
    heading = [h.proto.body for h in at.get("html") if "<h3" in h.proto.body]
    assert heading == [f'<h3 style="margin: 0.5rem 0; font-weight: 600">#{run} ![x](http://evil.example/i.png)</h3>']
    md = " ".join(m.value for m in at.markdown)
    assert "epoch 2, step 20 · 3.0 MB" in md and "resnet18, cifar stem" in md
    # Large files: "Prepare", then the download button with the bytes (never a deferred callable).
    at.button(key="detail_checkpoint_prepare").click().run()
    at.button(key="detail_encoder_prepare").click().run()
    labels = [b.label for b in at.get("download_button")]
    assert "Download checkpoint (3.0 MB)" in labels and "Download encoder (torchvision state dict)" in labels
    code = [c.value for c in at.code if "load_state_dict" in c.value][0]
    assert "torchvision.models.resnet18()" in code and "kernel_size=3, stride=1" in code and "nn.Identity()" in code
    imgs = at.get("image")
    assert len(imgs) == 2  # trained and untrained neighbour grids
    captions = " ".join(str(i.proto) for i in imgs)
    assert "Trained encoder: 100%" in captions and "Untrained encoder (random init, same seed): 50%" in captions
    assert any("principal components" in c.proto.spec for c in at.get("plotly_chart"))


def test_tags_and_note_are_edited_and_shown_as_plain_text(app, db: Engine) -> None:
    from db.queries import get_run

    run = add_run(db, status="completed")
    at = app(run=run)
    at.text_input(key=f"annotate_tags_{run}").set_value("baseline, lr:0.3")
    at.text_area(key=f"annotate_note_{run}").set_value("**not bold** <b>nor this</b>")
    next(b for b in at.button if b.label == "Save").click().run()
    row = get_run(db, run)
    assert row["tags"] == ["baseline", "lr:0.3"] and row["note"] == "**not bold** <b>nor this</b>"
    shown = [t.value for t in at.text]
    assert "Tags: baseline, lr:0.3" in shown and "**not bold** <b>nor this</b>" in shown

    at.text_input(key=f"annotate_tags_{run}").set_value("bad tag!")
    at.text_area(key=f"annotate_note_{run}").set_value("changed")
    next(b for b in at.button if b.label == "Save").click().run()
    assert any("Not saved" in e and "'tag!'" in e for e in texts(at, "error"))
    assert get_run(db, run)["note"] == "**not bold** <b>nor this</b>"  # neither half was written


def test_files_outside_the_runs_folder_are_not_served(app, db: Engine, tmp_path) -> None:  # noqa: ANN001
    from db.queries import update_run

    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"secret")
    run = add_run(db, status="completed")
    update_run(db, run, checkpoint_path=str(outside))
    at = app(run=run)
    assert not at.get("download_button")
    assert any("No checkpoint yet" in c for c in texts(at, "caption"))


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
