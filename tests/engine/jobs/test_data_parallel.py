"""A run with devices=2 on the CPU, end to end through the worker: torchrun, two gloo processes,
kill and resume, cancel, and the dashboard's view of it.

The real worker (`python -m engine worker --devices cpu`) and the real trainer; the run's two
processes share the worker's one CPU slot. (Loss and gradient equivalence with one process is
tests/engine/simclr/test_distributed.py.)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from db import queue
from db.config import RunConfig
from db.queries import create_runs, get_run, metric_rows
from db.session import make_engine
from db.status import CANCELLED, COMPLETED
from db.views import run_summaries
from tests.engine.jobs.queue_support import pid_alive, start_worker
from tests.support import wait_until

pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 6
# 8x8 synthetic images, ResNet18 with the imagenet stem; a global batch of 16 = 8 per process.
TWO_PROCESSES = dict(dataset="synthetic", image_size=8, encoder="resnet18", stem="imagenet", projection_dim=8,
                     batch_size=16, subset_size=16 * STEPS_PER_EPOCH, epochs=3, eval_every=3, knn_k=5,
                     device="cpu", devices=2)
CHILD_ENV = {"SIMCLR_HEARTBEAT_S": "1", "SIMCLR_NUM_THREADS": "2"}  # one thread per process


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_two_process_cpu_run_is_killed_resumes_completes_and_a_second_one_cancels(
        sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    run_id, long_id = create_runs(engine, [RunConfig(**TWO_PROCESSES), RunConfig(**{**TWO_PROCESSES, "epochs": 50})],
                                  retries=1)
    worker = start_worker(sqlite_url, "--devices", "cpu", "--poll", "0.2", "--exit-when-idle",
                          log_path=tmp_path / "worker.log", env=CHILD_ENV)
    try:
        # Into epoch 2: the first checkpoint exists and some of epoch 2's rows are written.
        wait_until(lambda: (r := get_run(engine, run_id))["checkpoint_path"] and r["step"] > STEPS_PER_EPOCH + 1,
                   240, "the run to pass its first checkpoint", every_s=0.05)
        torchrun = get_run(engine, run_id)["pid"]
        ranks = children(torchrun)
        assert len(ranks) == 2, "torchrun should have started one process per device"
        os.kill(torchrun, signal.SIGKILL)  # as the worker's own kill (or the OOM killer) would
        # torchrun puts each process in a session of its own: they die because they asked to die with it.
        wait_until(lambda: not any(pid_alive(p) for p in ranks), 20, "the run's processes to die with torchrun")

        run = wait_until(lambda: (r := get_run(engine, run_id))["status"] == COMPLETED and r, 240,
                         "the requeued run to resume and complete")
        log = Path(run["log_path"]).read_text()
        assert run["attempts"] == 2 and run["error"] is None, log
        assert "killed by SIGKILL" in log and "resumed from" in log
        assert log.count("linear probe:") == 1  # process 0 alone evaluates and logs
        steps = [r["step"] for r in metric_rows(engine, [run_id], ["train/loss"])]
        assert steps == list(range(1, 3 * STEPS_PER_EPOCH + 1)), "steps must be contiguous, without duplicates"
        assert len(metric_rows(engine, [run_id], ["epoch/loss"])) == 3
        [summary] = run_summaries(engine, ids=[run_id])  # what the dashboard's Runs page shows
        assert summary["display_status"] == COMPLETED and summary["progress"] == 1.0
        assert summary["device"] == "cpu x2" and summary["linear_top1"] is not None

        # The next run: a cancel reaches both processes (process 0's heartbeat, then its broadcast).
        wait_until(lambda: get_run(engine, long_id)["checkpoint_path"], 240, "the second run's first checkpoint")
        queue.request_cancel(engine, long_id)
        assert worker.wait(timeout=120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    cancelled = get_run(engine, long_id)
    assert cancelled["status"] == CANCELLED and cancelled["epoch"] < 50, Path(cancelled["log_path"]).read_text()
