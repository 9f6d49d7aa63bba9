"""Test support for the queue: a torch-free stand-in for `python -m engine execute`, a worker
launcher that uses it, and helpers to start workers and wait for the database to say something.

The worker's process handling, claims and recovery do not depend on what the child computes, and
importing torch costs seconds per child; these tests exercise the same database protocol as the
real trainer (heartbeat, metric rows, cancel at a step boundary, one final transition) in
milliseconds. Tests that must cover the real path use `python -m engine worker` instead.

    python tests/engine/jobs/queue_support.py run RUN_ID --attempt N   (URL in SIMCLR_DB, like the real child)
    python tests/engine/jobs/queue_support.py worker --db URL [worker flags]

A run's name picks its behaviour: "exit=N" exits with code N at once, leaving the run running;
"hang" sleeps forever without heartbeating; "steps=N" writes N steps (default 5); "env" writes
its CUDA_VISIBLE_DEVICES, SIMCLR_NUM_THREADS and niceness into the log (each process of a run with
devices > 1 does; process 0 alone then does the rest). STAND_IN_STEP_S sets the sleep per
step (default 0.01).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from sqlalchemy import update  # noqa: E402

from db.models import runs  # noqa: E402
from db.queries import get_run, write_metrics  # noqa: E402
from db.session import make_engine, write_tx  # noqa: E402
from db.status import COMPLETED, CANCELLED, RUNNING, transition, utcnow  # noqa: E402


def command(run_id: int, attempt: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "run", str(run_id), "--attempt", str(attempt)]


def options(name: str | None) -> dict[str, str]:
    return dict(part.split("=", 1) if "=" in part else (part, "") for part in (name or "").split())


def run(run_id: int) -> int:
    engine = make_engine(os.environ["SIMCLR_DB"], upgrade=False)  # the schema was checked by the worker
    run = get_run(engine, run_id)
    opts = options(run["name"])
    if "exit" in opts:
        return int(opts["exit"])
    if "hang" in opts:
        time.sleep(3600)
    rank = int(os.environ.get("RANK", "0"))  # started by torchrun for a run with devices > 1
    if "env" in opts:
        print(f"rank {rank} of {os.environ.get('WORLD_SIZE', '1')}: "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} "
              f"SIMCLR_NUM_THREADS={os.environ.get('SIMCLR_NUM_THREADS')!r} nice={os.nice(0)}", flush=True)
    if rank > 0:
        return 0  # as in the real child, process 0 speaks for the run
    steps, pause = int(opts.get("steps", 5)), float(os.environ.get("STAND_IN_STEP_S", "0.01"))
    for step in range(run["step"] + 1, steps + 1):
        time.sleep(pause)
        with write_tx(engine) as conn:
            write_metrics(conn, [dict(run_id=run_id, name="train/loss", step=step, epoch=0.0, value=1.0 / step,
                                      time=time.time())])
            cancel = get_run(conn, run_id)["cancel_requested"]
            conn.execute(update(runs).where(runs.c.id == run_id).values(step=step, heartbeat_at=utcnow()))
            if cancel:
                transition(conn, run_id, CANCELLED, expect=RUNNING, error="cancelled by request")
                print(f"run {run_id} cancelled", flush=True)
                return 0
    with write_tx(engine) as conn:
        transition(conn, run_id, COMPLETED, expect=RUNNING, final_loss=1.0 / steps)
    print(f"run {run_id} completed", flush=True)
    return 0


def start_worker(db_url: str, *args: str, stand_in: bool = False, log_path: Path | None = None,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """A worker process: the real `python -m engine worker`, or one whose runs use the stand-in."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--db", db_url] if stand_in else \
        [sys.executable, "-m", "engine", "--db", db_url, "worker"]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen([*cmd, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    finally:
        if log_path:
            out.close()


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie has exited; only its parent can reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def worker(argv: list[str]) -> int:
    from engine.jobs.worker import add_worker_flags, worker_from_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    add_worker_flags(parser)
    return worker_from_args(parser.parse_args(argv), command=command).run()


if __name__ == "__main__":
    if sys.argv[1] == "run":
        sys.exit(run(int(sys.argv[2])))
    sys.exit(worker(sys.argv[2:]))
