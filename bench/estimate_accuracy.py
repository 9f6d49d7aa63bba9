"""How close are the dashboard's time estimates to what runs really take? (goal: within 30 %)

    .venv/bin/python bench/estimate_accuracy.py [--scale 1]

A small sweep of real runs, one after another, each through a real worker (`python -m engine
worker --exit-when-idle`, as the dashboard's runs go: process start, torch import, data, training,
kNN, linear probe). Before each run starts, the Launch page's estimate is computed from the runs
finished so far (dashboard.estimate over db.views.run_timings); afterwards its actual duration
(claimed to finished) is read from the database. Prints one row per run: the estimate, its basis,
the actual duration and the error, and the median absolute error of the runs that had a measured
or calibrated basis (the first run has none: its estimate is the rough FLOP model's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from dashboard.estimate import estimate
from db import views
from db.config import RunConfig
from db.queries import create_run, get_run
from db.session import make_engine

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(dataset="synthetic", stem="imagenet", projection_dim=16, knn_k=10, device="cpu")
# (image size, batch, subset, epochs, eval_every): what changes between runs of a sweep.
SWEEP = [(16, 32, 320, 2, 1), (16, 32, 320, 4, 2), (16, 32, 640, 2, 2), (16, 64, 640, 3, 3),
         (16, 64, 320, 4, 2), (24, 32, 320, 2, 2), (24, 32, 320, 3, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1, help="multiply every run's epochs by this")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="estimate-bench-"))
    url = f"sqlite:///{work / 'runs.db'}"
    env = {**os.environ, "SIMCLR_DB": url, "SIMCLR_RUNS_DIR": str(work / "runs"), "PYTHONPATH": str(ROOT)}
    os.environ.update(SIMCLR_RUNS_DIR=env["SIMCLR_RUNS_DIR"])
    engine = make_engine(url)
    print(f"{'run':>3}  {'size':>4} {'batch':>5} {'subset':>6} {'epochs':>6}  {'estimate':>9} {'actual':>8} "
          f"{'error':>7}  basis")
    errors = []
    for i, (size, batch, subset, epochs, every) in enumerate(SWEEP, 1):
        cfg = RunConfig(**TINY, image_size=size, batch_size=batch, subset_size=subset, epochs=epochs * args.scale,
                        eval_every=every)
        est = estimate(cfg, views.run_timings(engine), ["cpu"])
        run_id = create_run(engine, cfg)
        subprocess.run([sys.executable, "-m", "engine", "worker", "--exit-when-idle", "--devices", "cpu"],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        run = get_run(engine, run_id)
        assert run["status"] == "completed", run["error"]
        actual = (run["finished_at"] - run["started_at"]).total_seconds()
        error = est.seconds / actual - 1
        if not est.basis.startswith("rough"):
            errors.append(abs(error))
        print(f"{i:>3}  {size:>4} {batch:>5} {subset:>6} {cfg.epochs:>6}  {est.seconds:>8.1f}s {actual:>7.1f}s "
              f"{error:>+7.0%}  {est.basis}", flush=True)
    if errors:
        print(f"\nmedian |error| of runs with a measured or calibrated basis: {statistics.median(errors):.0%} "
              f"(max {max(errors):.0%}, {len(errors)} runs; goal <= 30 %)")


if __name__ == "__main__":
    main()
