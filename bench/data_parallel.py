"""Data-parallel scaling: images/s of one run on 1 GPU against the same run on N GPUs.

    .venv/bin/python bench/data_parallel.py [--devices 1 2 4 8] [--per-device-batch 256] [--steps 300]
        [--device cuda|cpu] [--dataset cifar10-mini] [--stem cifar] [--image-size 32]

Each configuration is a real run through the real launch path (torchrun with one process per
device, `python -m engine execute RUN_ID`) in a scratch SQLite database; its figure is the
median of the run's own `train/images_per_sec` rows (global images/s, logged by process 0 about
once a second) after the first three (warm-up). Weak scaling: every device keeps the same batch,
so the global batch grows with N, which is why SimCLR wants several GPUs. Scaling efficiency =
images/s on N devices / (N x images/s on 1 device).

With `--device cpu` it starts N gloo processes on this machine's cores: a check that the script
and the launch path work, not a scaling figure (the processes share the same cores).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from db import queue
from db.config import KNOWN_SIZES, RunConfig
from db.queries import get_run, metric_rows
from db.session import make_engine
from engine.jobs.launch import execute_command, process_env

WARMUP_ROWS = 3


def measure(devices: int, args: argparse.Namespace, workdir: Path) -> tuple[float, int]:
    """(median images/s, rows it is the median of) of one run with `devices` processes."""
    db_url = f"sqlite:///{workdir / f'bench-{devices}.db'}"
    engine = make_engine(db_url)
    batch = args.per_device_batch * devices
    images = KNOWN_SIZES[args.dataset][0]
    steps_per_epoch = images // batch
    if steps_per_epoch < 1:
        raise SystemExit(f"a global batch of {batch} is more than the {images} images of {args.dataset}")
    cfg = RunConfig(dataset=args.dataset, stem=args.stem, image_size=args.image_size, encoder="resnet18",
                    batch_size=batch, epochs=math.ceil(args.steps / steps_per_epoch), eval_every=100000,
                    knn_k=10, device=args.device, devices=devices)
    # Claimed as a worker would: the run's processes check the claim (worker, attempt).
    claimed = queue.create_and_claim(engine, cfg, "bench", name=f"bench devices={devices}", device=args.device)
    run_id = claimed["id"]
    env = {**os.environ, **process_env(db_url), "SIMCLR_RUNS_DIR": str(workdir / f"runs-{devices}")}
    if args.device != "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(devices))
    log = workdir / f"log-{devices}.txt"
    with open(log, "wb") as out:
        rc = subprocess.run(execute_command(run_id, claimed["attempts"], devices), env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    run = get_run(engine, run_id)
    if rc != 0 or run["status"] != "completed":
        raise SystemExit(f"devices={devices}: run {run['status']} ({run['error']}); see {log}")
    rates = [r["value"] for r in metric_rows(engine, [run_id], ["train/images_per_sec"])][WARMUP_ROWS:]
    if not rates:
        raise SystemExit(f"devices={devices}: too few images/s rows; raise --steps")
    return statistics.median(rates), len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--per-device-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300, help="at least this many steps per run")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dataset", default="cifar10-mini", choices=sorted(KNOWN_SIZES))
    parser.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        have = torch.cuda.device_count()
        if max(args.devices) > have:
            raise SystemExit(f"--devices asks for up to {max(args.devices)} GPUs; {have} visible")
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: measure(n, args, Path(tmp)) for n in sorted(set(args.devices))}
    base = results[min(results)][0] / min(results)
    print(f"ResNet18 ({args.stem} stem), {args.dataset}, {args.image_size}px, {args.per_device_batch} images "
          f"per device and step, {args.device}")
    print(f"{'devices':>7} {'global batch':>12} {'images/s':>10} {'speed-up':>9} {'efficiency':>10} {'rows':>5}")
    for n, (rate, rows) in results.items():
        print(f"{n:>7} {n * args.per_device_batch:>12} {rate:>10.1f} {rate / results[min(results)][0]:>9.2f} "
              f"{rate / (n * base):>10.2f} {rows:>5}")


if __name__ == "__main__":
    main()
