"""`python -m engine worker --detach | --stop`: a worker that outlives the terminal and the dashboard.

`./lab.sh serve` runs `worker --detach` before it starts the dashboard, so queued runs start
without anyone opening a page, and stopping the dashboard does not stop them. The worker runs in
its own session (Ctrl-C in the terminal does not reach it), logs to runs/<database id>/worker.log, and
exits after `--idle-exit` seconds with nothing to do, or when asked by `worker --stop`.

Which worker is alive is read from the `workers` table (each worker heartbeats there), not from a
pid file: a pid file goes stale when a machine reboots, the table's heartbeat cannot.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from db.config import PROJECT_ROOT
from db.queue import LOCAL_IDLE_EXIT_S, live_workers, local_worker_log
from db.session import make_engine

START_TIMEOUT_S = 60.0  # a detached worker registers within this (it imports no torch)
STOP_HINT = "python -m engine worker --stop"


def _is_worker_process(pid: int) -> bool:
    """Guards against a recycled pid: only a process running `engine worker` gets our signal."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"engine" in argv and b"worker" in argv


def local_workers(db_url: str | None) -> list[dict[str, Any]]:
    """Live workers of this database running on this machine."""
    engine = make_engine(db_url)
    try:
        host = socket.gethostname()
        # Alive: heartbeating within its own --stale-after (db.heartbeat), as everywhere else.
        return [w for w in live_workers(engine) if w["hostname"] == host]
    finally:
        engine.dispose()


def _forwarded_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--idle-exit", f"{args.idle_exit if args.idle_exit is not None else LOCAL_IDLE_EXIT_S:g}",
             "--stale-after", f"{args.stale_after:g}", "--poll", f"{args.poll:g}", "--nice", str(args.nice)]
    if args.slots is not None:
        flags += ["--slots", str(args.slots)]
    if args.devices:
        flags += ["--devices", args.devices]
    return flags


def detach(args: argparse.Namespace, *, db_url: str) -> int:
    """Start a background worker unless one of this database is alive anywhere; say where it is."""
    engine = make_engine(db_url)
    try:
        alive = live_workers(engine)  # each heartbeating within its own --stale-after
        log = local_worker_log(engine)
    finally:
        engine.dispose()
    if alive:
        for w in alive:
            print(f"worker already running: pid {w['pid']} on {w['hostname']} ({w['devices']})")
        print(f"  log: {log}\n  stop it: {STOP_HINT}")
        return 0
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SIMCLR_DB": db_url,
           "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "engine", "worker", *_forwarded_flags(args)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    # Wait until it has registered: a dashboard opened right after must see it (and not start a second).
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-10:]
            print(f"error: the worker exited at once (code {proc.returncode}); the end of {log}:\n"
                  + "\n".join(tail), file=sys.stderr)
            return 1
        if any(w["pid"] == proc.pid for w in local_workers(db_url)):
            break
        time.sleep(0.3)
    else:
        print(f"warning: the worker (pid {proc.pid}) has not registered after {START_TIMEOUT_S:g} s; see {log}",
              file=sys.stderr)
    idle = args.idle_exit if args.idle_exit is not None else LOCAL_IDLE_EXIT_S
    print(f"worker started in the background: pid {proc.pid}\n  log: {log}\n"
          f"  stop it: {STOP_HINT}   (it also exits after {idle / 60:g} min with nothing to do)\n"
          "  runs go on when the dashboard stops")
    return 0


def stop_local_workers(db_url: str | None, *, now: bool = False) -> int:
    """SIGTERM (drain) this machine's live workers of this database; twice with `now`."""
    found = [w for w in local_workers(db_url) if _is_worker_process(w["pid"])]
    if not found:
        print("no live worker of this database on this machine")
        return 0
    for w in found:
        for i in range(2 if now else 1):
            if i:
                time.sleep(0.5)  # two separate signals: one pending signal absorbs a second
            try:
                os.kill(w["pid"], signal.SIGTERM)
            except ProcessLookupError:
                break
        if now:
            print(f"worker pid {w['pid']}: stopping now; its running runs are requeued and resume from "
                  "their last checkpoint on the next worker")
        else:
            print(f"worker pid {w['pid']}: claims nothing more and exits when its running runs finish "
                  f"({STOP_HINT} --now stops them now and requeues them)")
    return 0
