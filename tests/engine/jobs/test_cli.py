from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from db.config import PROJECT_ROOT
from db.queries import count_metrics, get_run, list_runs
from db.session import make_engine
from engine.jobs.cli import main

TINY = ["--dataset", "synthetic", "--image-size", "16", "--stem", "imagenet", "--projection-dim", "16",
        "--batch-size", "32", "--subset-size", "64", "--epochs", "1", "--knn-k", "10"]


@pytest.mark.parametrize("flags,needle", [
    (["--encoder", "vgg"], "encoder: must be one of resnet18, resnet50; got 'vgg' (flag --encoder)"),
    (["--batch-size", "0"], "batch_size: must be >= 2 and <= 65536; got 0 (flag --batch-size)"),
    (["--batch-size", "64", "--subset-size", "6000"], "subset_size: must be <= 5000"),
    (["--batch-size", "64", "--subset-size", "10"], "subset_size: must be at least one batch (64 images)"),
    (["--dataset", "imagefolder", "--data-dir", "/nonexistent/folder"], "/nonexistent/folder/train does not exist"),
    (["--lr", "abc"], "lr: expected a number, got 'abc'"),
])
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(
        sqlite_url: str, capsys: pytest.CaptureFixture, flags: list[str], needle: str) -> None:
    assert main(["--db", sqlite_url, "train", *flags]) == 2
    assert needle in capsys.readouterr().err
    assert list_runs(make_engine(sqlite_url)) == []


@pytest.mark.parametrize("command", ["train", "submit"])
def test_a_data_set_that_is_absent_offline_is_refused_before_anything_is_written(
        sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    # Before: queued (or created) and failed 11 s later, when torchvision's download timed out.
    monkeypatch.setenv("SIMCLR_OFFLINE", "1")
    root = tmp_path / "cifar"
    assert main(["--db", sqlite_url, command, "--dataset", "cifar10", "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"cifar10 is not in {root} and cannot be downloaded" in err and "(flag --dataset)" in err
    assert f"put cifar-10-python.tar.gz into {root}/" in err
    assert list_runs(make_engine(sqlite_url)) == []


def test_train_then_list(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "train", *TINY, "--name", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run 1 ")
    assert "run 1 completed" in out and "linear_top1" in out
    run = get_run(make_engine(sqlite_url), 1)
    assert run["status"] == "completed" and run["name"] == "tiny"
    assert main(["--db", sqlite_url, "runs"]) == 0
    listing = capsys.readouterr().out
    assert "completed" in listing and "synthetic" in listing and f"{run['linear_top1']:.4f} lbfgs" in listing


def test_a_failing_run_exits_nonzero_with_the_error_stored(tmp_path: Path, sqlite_url: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    for split in ("train", "test"):
        folder = tmp_path / "data" / split / "cls"
        folder.mkdir(parents=True)
        for i in range(4):
            (folder / f"{i}.jpg").write_bytes(b"this is not a jpeg")
    rc = main(["--db", sqlite_url, "train", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "data"),
               "--batch-size", "2", "--epochs", "1", "--no-progress"])
    assert rc == 1
    run = get_run(make_engine(sqlite_url), 1)
    assert run["status"] == "failed" and "0.jpg" in run["error"]
    assert "failed" in capsys.readouterr().out


def test_resume_refuses_a_completed_run_and_flags(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "train", *TINY, "--no-progress"]) == 0
    assert main(["--db", sqlite_url, "train", "--resume", "1"]) == 2
    assert "already completed" in capsys.readouterr().err
    assert main(["--db", sqlite_url, "train", "--resume", "1", "--epochs", "3"]) == 2
    assert "cannot be changed when resuming" in capsys.readouterr().err
    assert main(["--db", sqlite_url, "train", "--resume", "99"]) == 2
    assert "no run with id 99" in capsys.readouterr().err


def test_resume_a_cancelled_run_finishes_it(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    from db.session import write_tx
    from db.status import CANCELLED, RUNNING, transition

    db = make_engine(sqlite_url)
    from db.queries import create_run
    from tests.conftest import tiny_config

    run_id = create_run(db, tiny_config(epochs=2))
    with write_tx(db) as conn:
        transition(conn, run_id, RUNNING)
        transition(conn, run_id, CANCELLED)
    assert main(["--db", sqlite_url, "train", "--resume", str(run_id), "--no-progress"]) == 0
    assert get_run(db, run_id)["status"] == "completed"
    assert count_metrics(db, run_id)["train/loss"] == 4


def test_db_upgrade_command(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    from db.migrate import head_revision
    from db.session import make_engine

    assert main(["--db", sqlite_url, "db", "upgrade"]) == 0
    engine = make_engine(sqlite_url, upgrade=False)
    assert f"schema empty -> {head_revision(engine)}" in capsys.readouterr().out
    engine.dispose()


def test_the_module_runs_as_a_program_with_a_progress_bar(tmp_path: Path) -> None:
    """As a person runs it: `python -m engine train ...` in a fresh process, SIMCLR_DB from the environment."""
    env = dict(os.environ, SIMCLR_DB=f"sqlite:///{tmp_path / 'cli.db'}")
    proc = subprocess.run([sys.executable, "-m", "engine", "train", *TINY], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("run 1 ")
    assert "step/s" in proc.stderr or "s/step" in proc.stderr  # tqdm's bar
    assert "epoch 1/1" in proc.stderr
    assert get_run(make_engine(env["SIMCLR_DB"]), 1)["status"] == "completed"


def test_submit_preset_makes_the_baseline_sweep_and_flags_win(sqlite_url: str) -> None:
    assert main(["--db", sqlite_url, "submit", "--preset", "baseline-epochs", "--dataset", "cifar10-mini"]) == 0
    found = list_runs(make_engine(sqlite_url))
    assert len(found) == 12 and {r["dataset"] for r in found} == {"cifar10-mini"}
    assert {(r["epochs"], r["batch_size"]) for r in found} == {
        (e, b) for e in (300, 500, 1000, 1500) for b in (64, 128, 256)}
    # --grid for a preset's grid field replaces it; a single flag does too
    assert main(["--db", sqlite_url, "submit", "--preset", "baseline-subset", "--grid", "subset_size=300",
                 "--batch-size", "64", "--epochs", "1"]) == 0
    assert len(list_runs(make_engine(sqlite_url))) == 13


def test_train_refuses_a_sweep_preset_and_unknown_presets(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--db", sqlite_url, "train", "--preset", "baseline-subset"]) == 2
    assert "makes a sweep" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--db", sqlite_url, "train", "--preset", "nope"])


def test_train_help_shows_every_fields_range_and_default(capsys: pytest.CaptureFixture) -> None:
    from db.config import config_fields
    from engine.jobs.cli_args import flag_name

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    section = text.split("run configuration:", 1)[1]
    entries = {e.split()[0]: e for e in re.split(r" (?=--[a-z-]+ [A-Z]+ )", " " + section) if e.strip()}
    for f in config_fields():
        flag = flag_name(f.name)
        entry = entries[flag]
        assert "default" in entry, (flag, entry)
        m = f.metadata
        if "choices" in m:
            assert "one of: " + ", ".join(m["choices"]) in entry, entry
        elif "max" in m:
            assert f"x <= {m['max']}" in entry, entry
    assert "--batch-size INT images per step (each gives two views); 2 <= x <= 65536; default 256" in text
    assert "--temperature FLOAT NT-Xent temperature; 0.0 < x <= 10.0; default 0.5" in text


def test_runs_piped_into_head_exits_quietly(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    from db.queries import create_runs
    from tests.conftest import tiny_config

    create_runs(db, [tiny_config()] * 400)
    proc = subprocess.run(f"{sys.executable} -m engine --db {sqlite_url} runs --limit 400 | head -3", shell=True,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert len(proc.stdout.splitlines()) == 3
    assert proc.stderr == ""  # no BrokenPipeError traceback


def test_runs_shows_the_dashboards_status_word(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import runs
    from db.queries import create_runs
    from db.session import write_tx
    from db.status import utcnow
    from tests.conftest import tiny_config

    db = make_engine(sqlite_url)
    dead, cancelling = create_runs(db, [tiny_config()] * 2)
    with write_tx(db) as conn:
        conn.execute(update(runs).where(runs.c.id == dead).values(status="running",
                                                                  heartbeat_at=utcnow() - timedelta(hours=1)))
        conn.execute(update(runs).where(runs.c.id == cancelling).values(status="running", heartbeat_at=utcnow(),
                                                                        cancel_requested=True))
    assert main(["--db", sqlite_url, "runs"]) == 0
    lines = {int(line.split()[0]): line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines == {dead: "dead", cancelling: "cancelling"}
