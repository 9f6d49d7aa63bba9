"""The local worker the app starts when no worker is alive: started once, detached, reaped, and left
running when the server stops (runs outlive the dashboard)."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from sqlalchemy import Engine

from dashboard import local_worker
from dashboard.local_worker import LocalWorker
from db.identity import database_id
from db.queue import register_worker


def _sleeper(seconds: float):  # noqa: ANN202
    return lambda: [sys.executable, "-c", f"import time; time.sleep({seconds})"]


def _wait(predicate, timeout: float = 10.0) -> bool:  # noqa: ANN001
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local_worker.DISABLE_ENV, raising=False)


def test_starts_one_detached_worker_with_an_idle_exit(db: Engine, enabled: None, sqlite_url: str) -> None:
    worker = LocalWorker(sqlite_url, _sleeper(60))
    try:
        assert "started" in worker.ensure(db)
        pid = worker.proc.pid
        assert os.getsid(pid) == pid  # its own session: Ctrl-C in the server's terminal does not reach it
        status = worker.ensure(db)
        # No second worker; the sidebar says where its log is: beside this database's run folders.
        assert "running" in status and f"{database_id(db)}/worker.log" in status
        assert worker.proc.pid == pid
    finally:
        os.killpg(worker.proc.pid, signal.SIGKILL)
    assert _wait(lambda: worker.proc.poll() is not None)
    command = local_worker.default_command()
    assert command[-2:] == ["--idle-exit", f"{local_worker.LOCAL_IDLE_EXIT_S:g}"]
    assert not hasattr(local_worker, "_stop_all")  # nothing stops it when the server exits


def test_a_dead_worker_is_reaped_and_backs_off(db: Engine, enabled: None, sqlite_url: str) -> None:
    worker = LocalWorker(sqlite_url, lambda: [sys.executable, "-c", "raise SystemExit(3)"])
    worker.ensure(db)
    proc = worker.proc
    assert _wait(lambda: worker.last_exit is not None)  # the reaper thread waited on it
    assert proc.returncode == 3
    status = worker.ensure(db)
    assert "failed" in status and "exit code 3" in status  # dying at once: no restart loop
    assert worker.proc is proc


def test_not_started_when_a_worker_heartbeats(db: Engine, enabled: None, sqlite_url: str) -> None:
    register_worker(db, "elsewhere:1:0", hostname="elsewhere", pid=1, slots=1, devices="cuda:0")
    worker = LocalWorker(sqlite_url, _sleeper(60))
    assert worker.ensure(db) == "1 worker alive (pid 1 on elsewhere)"
    assert worker.ensure(db) == "1 worker alive (pid 1 on elsewhere)"  # between looks: what the last one found
    assert worker.proc is None


def test_switched_off_by_environment(db: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_worker.DISABLE_ENV, "1")
    worker = LocalWorker(sqlite_url, _sleeper(60))
    assert "off" in worker.ensure(db)
    assert worker.proc is None
