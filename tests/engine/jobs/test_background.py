"""The background worker: `worker --detach` starts one that outlives its terminal, says where it is,
is not started twice, stops on `worker --stop`, and exits by itself when idle."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from db.config import RunConfig
from db.identity import database_id
from db.queries import create_runs, get_run
from db.session import make_engine
from db.queue import live_workers
from engine.jobs.worker import Worker, plan_slots
from tests.engine.jobs import queue_support
from tests.engine.jobs.queue_support import pid_alive
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[3]


def engine_cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "--db", db_url, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_detach_starts_one_worker_that_says_where_it_is_and_stops_on_command(sqlite_url: str, tmp_path: Path) -> None:
    started = engine_cli(sqlite_url, "worker", "--detach", "--devices", "cpu")
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"pid (\d+)", started.stdout).group(1))
    try:
        assert os.getsid(pid) == pid  # its own session: Ctrl-C in the terminal that started it does not reach it
        log = tmp_path / "runs" / database_id(make_engine(sqlite_url)) / "worker.log"  # beside its run folders
        assert f"log: {log}" in started.stdout and "python -m engine worker --stop" in started.stdout
        assert log.is_file()
        engine = make_engine(sqlite_url)
        assert [w["pid"] for w in live_workers(engine)] == [pid]  # registered before --detach returned

        again = engine_cli(sqlite_url, "worker", "--detach", "--devices", "cpu")
        assert again.returncode == 0 and f"worker already running: pid {pid}" in again.stdout
        assert [w["pid"] for w in live_workers(engine)] == [pid]  # not a second one

        stopped = engine_cli(sqlite_url, "worker", "--stop")
        assert stopped.returncode == 0 and f"worker pid {pid}" in stopped.stdout, stopped.stdout
        wait_until(lambda: not pid_alive(pid), 30, "the worker to exit after --stop")
        assert live_workers(engine) == []  # it marked itself stopped
        assert "no live worker" in engine_cli(sqlite_url, "worker", "--stop").stdout
        engine.dispose()
    finally:
        if pid_alive(pid):
            os.kill(pid, 9)


def test_an_idle_worker_exits_by_itself_but_not_while_there_is_work(sqlite_url: str, tiny_cfg: RunConfig) -> None:
    engine = make_engine(sqlite_url)
    [run_id] = create_runs(engine, [tiny_cfg], names=["steps=20"])
    log: list[str] = []
    worker = Worker(sqlite_url, slots=plan_slots("cpu", 1, [], cores=2), poll_s=0.05, heartbeat_s=0.2,
                    idle_exit_s=0.5, command=queue_support.command, log=log.append)
    t0 = time.monotonic()
    assert worker.run() == 0
    assert time.monotonic() - t0 < 30
    assert get_run(engine, run_id)["status"] == "completed"  # it ran the queued run before going idle
    assert any("idle for 0.5 s" in m for m in log), log
    engine.dispose()
