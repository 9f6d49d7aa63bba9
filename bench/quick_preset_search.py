"""Search for the CPU quick preset: which short run lifts kNN top-1 most within minutes?

    nice -n 10 .venv/bin/python bench/quick_preset_search.py \
        "optimizer=adam lr=1e-3 temperature=0.2 batch_size=128 stem=imagenet epochs=10" ...

Each argument is one trial: RunConfig fields as `name=value`, on top of dataset=cifar10-mini,
device=cpu. A trial trains with the real trainer (in this process, a throw-away SQLite database)
and prints, per evaluated epoch, the wall time since the start and kNN top-1; at the end one line
with the lift over the SAME encoder at random initialization (same seed, stem and image size),
the wall time, the images/s of training and the epochs done. Results are appended as JSON lines
to --out so a table can be built from them.

--max-minutes stops a trial early (cancel between steps) once its process has used that many
minutes of a dedicated 2-core machine (process CPU seconds / 2), and reports the last kNN it
measured, so a trial that is too slow for the budget still says how far it got. CPU time, not wall
time, because the machine is shared: wall time there says more about the neighbours than the run.
Run with --threads 1 when the machine is loaded (no CPU time lost to threads spinning while they
wait for a core), and under `nice`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

from quality import features, knn, random_init_encoder  # bench/quality.py: this script's folder is on sys.path
from db.config import RunConfig, config_from_text, run_dir
from db.identity import database_id
from db.queries import create_run
from db.session import make_engine, write_tx
from db.status import RUNNING, transition
from engine.simclr.data import load_dataset
from engine.simclr.trainer import RunCancelled, RunContext, steps_per_epoch, train

_RANDOM_KNN: dict[tuple, float] = {}
CORES = 2  # the budget is minutes of a dedicated machine of this many cores: CPU seconds / CORES


def random_init_knn(cfg: RunConfig) -> float:
    """kNN top-1 of the encoder the trainer would start from (same seed, stem and image size)."""
    key = (cfg.encoder, cfg.stem, cfg.image_size, cfg.seed, cfg.dataset)
    if key not in _RANDOM_KNN:
        feats, data = features(cfg, random_init_encoder(cfg))
        _RANDOM_KNN[key] = knn(cfg, feats, data)
    return _RANDOM_KNN[key]


def run_trial(spec: str, db_url: str, max_minutes: float) -> dict:
    values = dict(item.split("=", 1) for item in spec.split())
    values.setdefault("dataset", "cifar10-mini")
    values.setdefault("device", "cpu")
    cfg = config_from_text(values)
    base = random_init_knn(cfg)

    db = make_engine(db_url)
    run_id = create_run(db, cfg)
    with write_tx(db) as conn:
        transition(conn, run_id, RUNNING)
    cancel = threading.Event()
    curve: list[tuple[int, float, float, float]] = []  # (epoch, wall s, process CPU s, knn)
    start, cpu_start = time.perf_counter(), time.process_time()
    last_step = [0]

    def log(message: str) -> None:
        # "epoch 3/10: loss 4.1234, knn top-1 0.3120" (the last kNN measured, so only the epochs
        # the trainer evaluates count: every eval_every-th and the last)
        if message.startswith("epoch ") and "knn top-1" in message:
            epoch = int(message.split()[1].split("/")[0])
            if epoch % cfg.eval_every and epoch != cfg.epochs:
                return
            curve.append((epoch, time.perf_counter() - start, time.process_time() - cpu_start,
                          float(message.rsplit(" ", 1)[1])))
            print(f"    epoch {epoch:>3}  {curve[-1][1] / 60:5.1f} min wall  {curve[-1][2] / 60:5.1f} min cpu  "
                  f"knn {curve[-1][3]:.4f}", flush=True)

    def on_step(step: int, total: int, loss: torch.Tensor) -> None:
        last_step[0] = step
        if time.process_time() - cpu_start > max_minutes * 60 * CORES:
            cancel.set()

    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), cancel=cancel, on_step=on_step, log=log)
    finished = True
    try:
        summary = train(cfg, ctx)
    except RunCancelled:
        finished = False
        summary = {"knn_top1": curve[-1][3] if curve else base}
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n_images = len(load_dataset(cfg).pretrain_images)
    images_done = last_step[0] * cfg.batch_size
    result = {
        "spec": spec, "random_knn": base, "knn": summary["knn_top1"], "lift": summary["knn_top1"] - base,
        "linear_top1": summary.get("linear_top1"), "wall_s": wall, "cpu_s": cpu, "finished": finished,
        "epochs_done": images_done / (steps_per_epoch(cfg, n_images) * cfg.batch_size),
        "images_per_s": images_done / wall, "images_per_cpu_s": images_done / cpu, "curve": curve, "load": os.getloadavg()[0],
    }
    print(f"  => lift {100 * result['lift']:+.1f} pts (knn {result['knn']:.4f} vs random {base:.4f}), "
          f"{wall / 60:.1f} min wall, {cpu / 60 / CORES:.1f} min of CPU / {CORES} cores, "
          f"{result['epochs_done']:.1f} epochs, {result['images_per_s']:.0f} img/s, "
          f"{'finished' if finished else 'STOPPED at the time limit'}, load {result['load']:.1f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trials", nargs="+", help="one trial per argument: 'field=value field=value ...'")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--out", default="quick_preset_search.jsonl")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice). With 1, process CPU time is free of the "
                             "spin-waiting of threads that wait for a share of a loaded machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quick-"))
    os.environ.setdefault("SIMCLR_RUNS_DIR", str(tmp / "runs"))
    print(f"{torch.get_num_threads()} torch threads")
    for spec in args.trials:
        print(f"trial: {spec}", flush=True)
        result = run_trial(spec, f"sqlite:///{tmp / 'search.db'}", args.max_minutes)
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
