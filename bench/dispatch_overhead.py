"""Dispatch overhead per run: from submit to the run's first metric row, Ray job vs local worker.

    python bench/dispatch_overhead.py [--runs 3] [--ray ADDRESS]

Both executors are started first and left idle (a worker polling the queue, a dispatcher polling
the queue and a Ray head), then the same tiny run is submitted to each in turn, one at a time,
alternating (so a change in the machine's load hits both alike). The clock runs from the run's
`created_at` (written by submit) to the `time` of its first metric row (its first training
step): queue pick-up, process start, Python and torch imports, data set-up, one step. Both paths
share all of that except how the process is started, so the difference is the cost of going
through Ray (job submission, runtime environment, job supervisor). Without --ray, a local Ray
head (engine/jobs/ray_local.py) is started for the measurement and stopped afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

from db.config import RunConfig
from db.queries import create_runs, get_run, metric_rows
from db.session import make_engine
from db.status import FINISHED

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(dataset="synthetic", image_size=8, encoder="resnet18", stem="imagenet", projection_dim=8,
            batch_size=16, subset_size=16, epochs=1, eval_every=1, knn_k=5, device="cpu")


def first_row_delay(engine, run_id: int, timeout_s: float = 600) -> float:  # noqa: ANN001
    """Seconds from the run's creation to its first metric row; waits for the run to finish too."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = get_run(engine, run_id)
        if run["status"] in FINISHED:
            rows = metric_rows(engine, [run_id])
            if not rows:
                raise RuntimeError(f"run {run_id} ended {run['status']} without metrics: {run['error']}")
            created = run["created_at"].replace(tzinfo=timezone.utc).timestamp()
            return min(r["time"] for r in rows) - created
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish within {timeout_s:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per executor (default 3)")
    parser.add_argument("--ray", default=None, help="an existing Ray head's dashboard address (default: start one)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    # One database per executor (two files in one folder, the same disk): sharing one, either could
    # take the other's run.
    urls = {name: f"sqlite:///{tmp / f'{name}.db'}" for name in ("worker", "dispatcher")}
    engines = {name: make_engine(u) for name, u in urls.items()}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMCLR_RUNS_DIR": str(tmp / "runs"), "SIMCLR_NUM_THREADS": "1"}
    head = None
    if args.ray is None:
        from engine.jobs.ray_local import LocalRayHead

        head = LocalRayHead.start(num_cpus=2)
        env.update(head.env)
    address = args.ray or head.address
    base = [sys.executable, "-m", "engine"]
    commands = {"worker": ["worker", "--devices", "cpu", "--poll", "0.2"],
                "dispatcher": ["dispatch", "--ray", address, "--poll", "0.2"]}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(tmp / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen([*base, "--db", urls[name], *command], cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT)
        time.sleep(5)  # both idle and polling before the first submission
        delays: dict[str, list[float]] = {"worker": [], "dispatcher": []}
        for i in range(args.runs):
            for name in ("worker", "dispatcher"):
                [run_id] = create_runs(engines[name], [RunConfig(**{**TINY, "seed": i})])
                delays[name].append(first_row_delay(engines[name], run_id))
                print(f"{name:<10} run {run_id}: {delays[name][-1]:.2f} s to the first metric row", flush=True)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if head is not None:
            head.stop()
    local, ray = statistics.median(delays["worker"]), statistics.median(delays["dispatcher"])
    print(f"\nsubmit -> first metric row, median of {args.runs} (1 CPU thread per run, tiny synthetic run):")
    print(f"  local worker     {local:6.2f} s")
    print(f"  Ray job          {ray:6.2f} s")
    print(f"  Ray overhead     {ray - local:+6.2f} s per run ({ray / local:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
