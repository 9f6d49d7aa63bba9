"""Reliability of the queue under many workers and under kills (issue 3, item 9).

Real worker processes (`python -m engine worker`), each run in its own process. Most use the real
trainer (`python -m engine execute`) on the cheapest configuration there is; the 100-run
concurrency test also runs with the torch-free stand-in child, which tests the claim protocol at
full scale in seconds (importing torch alone costs each real child a few CPU seconds).
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from db import queue
from db.config import RunConfig
from db.queries import create_runs, get_run, list_runs, metric_rows
from db.session import make_engine
from db.status import CANCELLED, COMPLETED, QUEUED
from engine.jobs.cli import main
from tests.engine.jobs.queue_support import pid_alive, start_worker
from tests.support import wait_until

pytestmark = pytest.mark.slow

# The cheapest real run: 8x8 synthetic images, ResNet18 with the imagenet stem, one step.
TINY = dict(dataset="synthetic", image_size=8, encoder="resnet18", stem="imagenet", projection_dim=8,
            batch_size=16, subset_size=16, epochs=1, eval_every=1, knn_k=5)
# Long enough to be killed mid-epoch: 3 epochs of 32 steps, a checkpoint after each.
STEPS_PER_EPOCH = 32
THREE_EPOCHS = {**TINY, "subset_size": 16 * STEPS_PER_EPOCH, "epochs": 3, "eval_every": 3}
# Faster heartbeats and cancel checks in the run processes, one thread each (2 shared cores).
CHILD_ENV = {"SIMCLR_HEARTBEAT_S": "1", "SIMCLR_NUM_THREADS": "1"}


def all_text(paths: list[Path]) -> str:
    return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())


def assert_contiguous_steps(engine, run_id: int) -> list[int]:
    steps = [r["step"] for r in metric_rows(engine, [run_id], ["train/loss"])]
    assert steps == list(range(1, len(steps) + 1)), "train/loss steps must be unique and contiguous from 1"
    return steps


# ------------------------------------------------------------------------------- many workers
@pytest.mark.parametrize("child", ["stand-in", "real"])
def test_eight_workers_claim_a_hundred_runs_each_exactly_once(db_url: str, child: str, tmp_path: Path) -> None:
    n = 100 if child == "stand-in" else int(os.environ.get("SIMCLR_TEST_QUEUE_RUNS", "16"))
    engine = make_engine(db_url)
    ids = create_runs(engine, [RunConfig(**{**TINY, "seed": i}) for i in range(n)],
                      names=["steps=3"] * n)  # the name only steers the stand-in
    logs = [tmp_path / f"worker{i}.log" for i in range(8)]
    workers = [start_worker(db_url, "--devices", "cpu", "--poll", "0.2", "--exit-when-idle",
                            stand_in=child == "stand-in", log_path=log, env=CHILD_ENV) for log in logs]
    try:
        for w in workers:
            assert w.wait(timeout=1800) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    runs = {r["id"]: r for r in list_runs(engine)}
    worker_text = all_text(logs)
    assert sorted(runs) == ids
    bad = {i: (r["status"], r["error"]) for i, r in runs.items() if r["status"] != COMPLETED or r["error"]}
    assert not bad, f"runs not completed cleanly: {bad}"
    assert all(r["attempts"] == 1 for r in runs.values()), "a run was claimed more than once"
    starts = re.findall(r"run (\d+) \(attempt \d+\) started", worker_text)
    assert sorted(map(int, starts)) == ids  # each run started exactly once, by exactly one worker
    assert len({r["worker_id"] for r in runs.values()}) > 1  # the work really was shared
    run_logs = all_text([Path(r["log_path"]) for r in runs.values()])
    assert "database is locked" not in worker_text + run_logs
    assert "database error" not in worker_text


# -------------------------------------------------------------------------------------- kills
def test_killed_run_process_is_requeued_resumed_and_completed(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    [run_id] = create_runs(engine, [RunConfig(**THREE_EPOCHS)], retries=1)
    worker = start_worker(db_url, "--devices", "cpu", "--poll", "0.2", "--exit-when-idle",
                          log_path=tmp_path / "worker.log", env=CHILD_ENV)
    # Mid-epoch 2: the first checkpoint exists and some of epoch 2's rows are already written.
    wait_until(lambda: (r := get_run(engine, run_id))["checkpoint_path"] and
               STEPS_PER_EPOCH + 2 <= r["step"] < 2 * STEPS_PER_EPOCH - 2, 300, "the run to be mid-epoch 2",
               every_s=0.05)
    pid = get_run(engine, run_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert worker.wait(timeout=600) == 0
    run = get_run(engine, run_id)
    log = Path(run["log_path"]).read_text()
    assert run["status"] == COMPLETED and run["error"] is None, log
    assert run["attempts"] == 2 and run["retries_left"] == 0
    assert "killed by SIGKILL" in log and "resumed from" in log
    assert assert_contiguous_steps(engine, run_id)[-1] == 3 * STEPS_PER_EPOCH
    epochs = [r["step"] for r in metric_rows(engine, [run_id], ["epoch/loss"])]
    assert len(epochs) == len(set(epochs)) == 3


def test_killed_worker_loses_its_runs_until_a_restart_recovers_them(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [RunConfig(**THREE_EPOCHS)], retries=1)
    args = ("--devices", "cpu", "--poll", "0.2", "--stale-after", "3")
    worker = start_worker(sqlite_url, *args, log_path=tmp_path / "worker1.log", env=CHILD_ENV)
    wait_until(lambda: (r := get_run(engine, run_id))["checkpoint_path"] and r["step"] > STEPS_PER_EPOCH + 2,
               300, "the run to pass its first checkpoint", every_s=0.05)
    pid = get_run(engine, run_id)["pid"]
    worker.kill()
    worker.wait()
    wait_until(lambda: not pid_alive(pid), 10, "the run process to die with its worker")
    restarted = start_worker(sqlite_url, *args, "--exit-when-idle", log_path=tmp_path / "worker2.log", env=CHILD_ENV)
    assert restarted.wait(timeout=600) == 0
    run = get_run(engine, run_id)
    assert run["status"] == COMPLETED and run["attempts"] == 2, Path(run["log_path"]).read_text()
    assert "worker lost: no heartbeat for 3 s; requeued" in (tmp_path / "worker2.log").read_text()
    assert "resumed from" in Path(run["log_path"]).read_text()
    assert_contiguous_steps(engine, run_id)


def test_cancel_a_queued_and_a_running_run(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    engine = make_engine(sqlite_url)
    running, waiting = create_runs(engine, [RunConfig(**{**THREE_EPOCHS, "epochs": 50}), RunConfig(**TINY)])
    worker = start_worker(sqlite_url, "--devices", "cpu", "--poll", "0.2", "--exit-when-idle",
                          log_path=tmp_path / "worker.log", env=CHILD_ENV)
    wait_until(lambda: get_run(engine, running)["checkpoint_path"], 300, "the first checkpoint")
    t0 = time.monotonic()
    assert main(["--db", sqlite_url, "cancel", str(waiting), str(running)]) == 0
    assert get_run(engine, waiting)["status"] == CANCELLED  # at once
    run = wait_until(lambda: (r := get_run(engine, running))["status"] == CANCELLED and r, 60,
                     "the running run to stop")
    # Within a few seconds: the child's 1 s heartbeat sees the request, the loop stops at its next step.
    assert time.monotonic() - t0 < 20
    assert run["epoch"] < 50 and Path(run["checkpoint_path"]).exists()  # stopped early, checkpoint kept
    assert worker.wait(timeout=120) == 0
    assert queue.running_count(engine) == 0 and not queue.has_queued(engine)
    assert get_run(engine, waiting)["attempts"] == 0  # never started
    assert QUEUED not in {r["status"] for r in list_runs(engine)}
