"""The worker the dashboard starts by itself, so `streamlit run dashboard/app.py` alone runs jobs.

`./lab.sh serve` starts a background worker before the server (`python -m engine worker --detach`);
this is the fallback for when none is alive: a bare `streamlit run`, or after that worker exited
for being idle. Both are the same kind of worker: detached, logging to runs/<database id>/worker.log,
exiting after LOCAL_IDLE_EXIT_S with nothing to do, stopped by `python -m engine worker --stop`.

Rules:
- Only when no live worker heartbeats in the `workers` table (another machine's worker counts:
  with PostgreSQL the jobs may well run elsewhere) and SIMCLR_NO_LOCAL_WORKER is not set (the
  Procfile's web line sets it because its worker line runs one).
- Detached with start_new_session=True: Ctrl-C in the server's terminal goes to the server's
  process group, and must not interrupt training mid-step. The server does NOT stop it when it
  exits: runs outlive the dashboard, as with every experiment tracker.
- Reaped: a thread waits on the process, so a worker that dies never lingers as a zombie; the next
  page view notices and starts another, backing off when it keeps dying at once.
- One per server process and database (held in st.cache_resource by app.py), guarded by a lock
  because several browser sessions run scripts in parallel threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from sqlalchemy import Engine

from db.config import PROJECT_ROOT
from db.queue import LOCAL_IDLE_EXIT_S, live_workers, local_worker_log

DISABLE_ENV = "SIMCLR_NO_LOCAL_WORKER"
CHECK_EVERY_S = 5.0  # how often page views may look at the workers table at all
QUICK_DEATH_S = 20.0  # a worker that dies this soon after starting is broken, not unlucky...
BACKOFF_S = 60.0  # ...so wait this long before trying again (and show why)


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def default_command() -> list[str]:
    # The database travels in SIMCLR_DB (see env below), the same way the server got it.
    return [sys.executable, "-m", "engine", "worker", "--idle-exit", f"{LOCAL_IDLE_EXIT_S:g}"]


@dataclass
class LocalWorker:
    db_url: str
    command: Callable[[], Sequence[str]] = default_command
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    last_check: float = 0.0
    retry_after: float = 0.0
    last_exit: str | None = None  # why the last one ended, for the sidebar
    last_status: str = "waiting for a worker"  # what the last look at the workers table found
    log_path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure(self, engine: Engine, *, now: float | None = None) -> str:
        """Start a worker if none is alive; returns a one-line status for the sidebar."""
        if disabled():
            return f"local worker off ({DISABLE_ENV}=1)"
        now = time.time() if now is None else now
        with self._lock:
            if self.alive():
                return f"local worker running (pid {self.proc.pid}; log {self.log_path})"
            if now - self.last_check < CHECK_EVERY_S and self.last_check:
                return self._status_without_check()
            self.last_check = now
            others = live_workers(engine)  # each heartbeating within its own --stale-after
            if others:
                where = ", ".join(f"pid {w['pid']} on {w['hostname']}" for w in others)
                self.last_status = f"{len(others)} worker{'s' if len(others) > 1 else ''} alive ({where})"
                return self.last_status
            if now < self.retry_after:
                return f"local worker failed ({self.last_exit}); retrying in {int(self.retry_after - now)} s"
            self._start(engine, now)
            return f"local worker started (pid {self.proc.pid}; log {self.log_path})"

    def _status_without_check(self) -> str:
        # Between looks (every CHECK_EVERY_S), repeat what the last one found rather than "waiting".
        if self.last_exit:
            return f"local worker ended: {self.last_exit}"
        return self.last_status

    def _start(self, engine: Engine, now: float) -> None:
        self.log_path = local_worker_log(engine)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SIMCLR_DB": self.db_url}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(list(self.command()), cwd=PROJECT_ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started_at = now
        proc = self.proc
        threading.Thread(target=self._reap, args=(proc,), name=f"reap-worker-{proc.pid}", daemon=True).start()

    def _reap(self, proc: subprocess.Popen) -> None:
        code = proc.wait()  # wait() reaps: no zombie is left behind
        with self._lock:
            lived = time.time() - self.started_at
            self.last_exit = f"exit code {code} after {lived:.0f} s; see {self.log_path}"
            if lived < QUICK_DEATH_S:
                self.retry_after = time.time() + BACKOFF_S
            self.last_check = 0.0  # look again at the next page view
