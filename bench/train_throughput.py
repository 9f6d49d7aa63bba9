"""Training throughput: the engine's step against the model-only ceiling and the seed's pipeline.

    .venv/bin/python bench/train_throughput.py [--steps 4] [--warmup 1] [--rounds 2] [--stems imagenet cifar]
        [--batches 64 256] [--optimizer lars] [--skip-reference] [--seed-checkout /tmp/seed-simclr]

For ResNet18, each stem and batch size, images/s (images, not views: each image gives two views) of
  (a) engine    the engine's whole step (batched augmentation on the device, NT-Xent, optimizer,
                metric logging to SQLite), timed through the trainer's own on_step callback;
  (b) ceiling   forward, backward and step of the same encoder + head on a pre-made tensor;
  (c) reference the seed's pipeline: per-image torchvision transforms in DataLoader workers,
                through the same trainer (augment_backend=reference);
  (d) seed      the seed's own code (Spijkervet/SimCLR: its model, NT_Xent, TransformsSimCLR in a
                DataLoader, Adam), imported from the checkout given with --seed-checkout;
and, for the input pipeline alone (no model), the batched augmentation against the seed's
DataLoader of per-image transforms.
Prints a table and the ratios a/b, a/c and a/d.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


import psutil
import torch

from db.config import RunConfig, run_dir
from db.identity import database_id
from db.queue import create_and_claim
from db.session import make_engine
from engine.simclr.loss import nt_xent
from engine.simclr.model import build_model
from engine.simclr.optim import build_optimizer
from engine.simclr.trainer import (RunContext, autocast_dtype, compile_enabled, memory_format, resolve_device,
                                   train, tune_backends)


class _Stop(Exception):
    pass


def cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers), all threads.

    On a shared machine whose cores are oversubscribed, wall time mostly measures the others;
    the CPU time a step consumes is what it costs, and images per CPU-second compare fairly
    (an idle 2-core machine turns them into images/s at about twice the figure)."""
    return _cpu_of([psutil.Process()]) + children_cpu_seconds()


def children_cpu_seconds() -> float:
    """CPU time of this process's live children (DataLoader workers) since they started."""
    return _cpu_of(psutil.Process().children(recursive=True))


def _cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:  # a worker that has just exited
            pass
    return total


clock = time.perf_counter  # --clock cpu: cpu_seconds


def engine_images_per_sec(cfg: RunConfig, db_url: str, warmup: int, steps: int) -> float:
    """Run the real trainer and time steps warmup+1 .. warmup+steps between on_step callbacks."""
    db = make_engine(db_url)
    run_id = create_and_claim(db, cfg, "bench")["id"]
    marks: dict[int, float] = {}

    cuda = resolve_device(cfg.device).type == "cuda"

    def on_step(step: int, total: int, loss: torch.Tensor) -> None:
        if step not in (warmup, warmup + steps):
            return
        if cuda:  # only at the two marks: a sync per step would stop the host from queueing ahead
            torch.cuda.synchronize()
        marks[step] = clock()
        if step == warmup + steps:
            raise _Stop()

    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), on_step=on_step, log=lambda m: None)
    try:
        train(cfg, ctx)
    except _Stop:
        pass
    return steps * cfg.batch_size / (marks[warmup + steps] - marks[warmup])


def ceiling_images_per_sec(cfg: RunConfig, warmup: int, steps: int) -> float:
    """Forward + backward + optimizer step only, on a tensor made once."""
    device = resolve_device(cfg.device)
    amp = autocast_dtype(cfg, device)
    tune_backends(device)
    layout = memory_format(device)
    model = build_model(cfg).to(device, memory_format=layout)
    forward = torch.compile(model) if compile_enabled(cfg, device) else model
    opt = build_optimizer(cfg, model)
    x = torch.randn(2 * cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    x = x.contiguous(memory_format=layout)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            z = forward(x)
        loss = nt_xent(z[: cfg.batch_size], z[cfg.batch_size:], cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (clock() - t0)


def augment_only_images_per_sec(cfg: RunConfig, backend: str, batches: int = 6) -> float:
    """The input pipeline alone, no model: batched augmentation on the device, or the seed's
    per-image transforms in DataLoader workers (both views of every image)."""
    from engine.simclr.augment import BatchedAugment, ReferenceTwoViews
    from engine.simclr.data import load_dataset
    from engine.simclr.trainer import loader_workers

    images = load_dataset(cfg).pretrain_images
    n = batches * cfg.batch_size
    images = images.repeat((n + len(images) - 1) // len(images), 1, 1, 1)[:n]
    if backend == "batched":
        aug, gen = BatchedAugment(cfg.image_size, cfg.jitter_strength), torch.Generator().manual_seed(0)
        aug(torch.cat([images[: cfg.batch_size]] * 2), gen)  # warm-up
        t0 = clock()
        for i in range(batches):
            x = images[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            aug(torch.cat([x, x]), gen)
        return n / (clock() - t0)
    loader = torch.utils.data.DataLoader(ReferenceTwoViews(images, cfg.image_size, cfg.jitter_strength),
                                         batch_size=cfg.batch_size, num_workers=loader_workers())
    it = iter(loader)
    next(it)  # workers started and warm
    t0 = clock()
    count = sum(len(v1) for v1, _ in it)
    return count / (clock() - t0)


class _PILPairs(torch.utils.data.Dataset):
    """CIFAR-10's Dataset as the seed used it: a PIL image per item through `transform`, with its label."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, as torchvision's CIFAR10
        self.labels, self.transform = labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def seed_code_images_per_sec(checkout: Path, cfg: RunConfig, warmup: int, steps: int) -> float:
    """The seed's own code, imported from a checkout of Spijkervet/SimCLR (never copied here): its SimCLR
    model (torchvision ResNet, imagenet stem, + its projector), NT_Xent, TransformsSimCLR in a DataLoader
    (one worker per core, as the reference column) and its optimizer (load_optimizer: Adam 3e-4), driven as
    its main.py's train() loop does (two encoder passes of B views, loss.item() every step)."""
    import importlib
    from types import SimpleNamespace

    from engine.simclr.data import load_dataset
    from engine.simclr.trainer import loader_workers

    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    simclr = importlib.import_module("simclr")
    modules = importlib.import_module("simclr.modules")
    transforms = importlib.import_module("simclr.modules.transformations")
    seed_model = importlib.import_module("model")
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg)
    loader = torch.utils.data.DataLoader(
        _PILPairs(data.pretrain_images, data.train_labels[data.pretrain_indices],
                  transforms.TransformsSimCLR(size=cfg.image_size)),
        batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=loader_workers())
    encoder = modules.get_resnet(cfg.encoder, pretrained=False)
    model = simclr.SimCLR(encoder, cfg.projection_dim, encoder.fc.in_features)
    optimizer, _ = seed_model.load_optimizer(SimpleNamespace(optimizer="Adam"), model)
    criterion = modules.NT_Xent(cfg.batch_size, cfg.temperature, 1)
    model.train()
    t0 = t1 = w0 = w1 = 0.0
    for step, ((x_i, x_j), _) in enumerate(loader):
        if step == warmup:
            t0, w0 = clock(), children_cpu_seconds()
        optimizer.zero_grad()
        h_i, h_j, z_i, z_j = model(x_i, x_j)
        loss = criterion(z_i, z_j)
        loss.backward()
        optimizer.step()
        loss.item()
        if step == warmup + steps - 1:
            t1, w1 = clock(), children_cpu_seconds()  # here, not after the loop: the workers exit with it
            break
    if clock is not cpu_seconds:
        return steps * cfg.batch_size / (t1 - t0)
    # CPU time: the workers prefetch, so much of the timed batches' augmentation was done before t0.
    # Count this process over the timed steps, plus the workers' whole CPU time (start-up included)
    # per batch they made: by now, all warmup + steps batches of the subset.
    main_per_step = ((t1 - w1) - (t0 - w0)) / steps
    return cfg.batch_size / (main_per_step + w1 / (warmup + steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stems", nargs="+", default=["imagenet", "cifar"])
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best of each is kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--optimizer", default="lars", help="the engine's (and the ceiling's) optimizer")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: images per CPU-second of this process and its workers (for a saturated machine)")
    parser.add_argument("--seed-checkout", type=Path,
                        help="a checkout of Spijkervet/SimCLR: adds column (d), the seed's own code (imagenet stem)")
    args = parser.parse_args()
    global clock
    clock = cpu_seconds if args.clock == "cpu" else time.perf_counter

    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    os.environ.setdefault("SIMCLR_RUNS_DIR", str(tmp / "runs"))
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"warmup {args.warmup} + {args.steps} timed steps, best of {args.rounds} interleaved rounds, "
          f"engine optimizer {args.optimizer}, clock {args.clock}")
    print(f"{'stem':<9} {'batch':>5} {'(a) engine':>11} {'(b) ceiling':>12} {'(c) reference':>14} {'(d) seed':>9} "
          f"{'a/b':>6} {'a/c':>6} {'a/d':>6}   {'aug-only: batched':>9} {'reference':>9}   images/s")
    nan = float("nan")
    for stem in args.stems:
        for batch in args.batches:
            n = batch * (args.warmup + args.steps)
            cfg = RunConfig(dataset="cifar10-mini", encoder="resnet18", stem=stem, batch_size=batch,
                            subset_size=min(n, 5000), epochs=1, device=args.device, eval_every=1000,
                            optimizer=args.optimizer)
            seed = args.seed_checkout is not None and stem == "imagenet"  # the seed has no cifar stem
            # Interleaved rounds, best of each: on a shared, noisy machine the fastest run is the
            # one least disturbed by others, and interleaving exposes every column to the same noise.
            a = b = c = d = 0.0
            for _ in range(args.rounds):
                a = max(a, engine_images_per_sec(cfg, db_url, args.warmup, args.steps))
                if seed:
                    d = max(d, seed_code_images_per_sec(args.seed_checkout, cfg, args.warmup, args.steps))
                b = max(b, ceiling_images_per_sec(cfg, args.warmup, args.steps))
                if not args.skip_reference:
                    c = max(c, engine_images_per_sec(cfg.replace(augment_backend="reference"), db_url,
                                                     args.warmup, args.steps))
            c, d = c or nan, d or nan
            aug_b = augment_only_images_per_sec(cfg, "batched")
            aug_r = augment_only_images_per_sec(cfg, "reference") if not args.skip_reference else nan
            print(f"{stem:<9} {batch:>5} {a:>11.1f} {b:>12.1f} {c:>14.1f} {d:>9.1f} {a / b:>6.2f} {a / c:>6.2f} "
                  f"{a / d:>6.2f}   {aug_b:>9.0f} {aug_r:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
