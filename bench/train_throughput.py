"""Training throughput: the engine's step against the model-only ceiling and the seed's pipeline.

    .venv/bin/python bench/train_throughput.py [--steps 4] [--warmup 1] [--rounds 2] [--stems imagenet cifar] [--batches 64 256]

For ResNet18, each stem and batch size, images/s (images, not views: each image gives two views) of
  (a) engine    the engine's whole step (batched augmentation on the device, NT-Xent, optimizer,
                metric logging to SQLite), timed through the trainer's own on_step callback;
  (b) ceiling   forward, backward and step of the same encoder + head on a pre-made tensor;
  (c) reference the seed's pipeline: per-image torchvision transforms in DataLoader workers,
                through the same trainer (augment_backend=reference);
and, for the input pipeline alone (no model), the batched augmentation against the seed's
DataLoader of per-image transforms.
Prints a table and the ratios a/b and a/c. With --device cuda it measures views/s at batch 512.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


import torch

from db.config import RunConfig, run_dir
from db.queue import create_and_claim
from db.session import make_engine
from engine.simclr.loss import nt_xent
from engine.simclr.model import build_model
from engine.simclr.optim import build_optimizer
from engine.simclr.trainer import RunContext, autocast_dtype, resolve_device, train


class _Stop(Exception):
    pass


def engine_images_per_sec(cfg: RunConfig, db_url: str, warmup: int, steps: int) -> float:
    """Run the real trainer and time steps warmup+1 .. warmup+steps between on_step callbacks."""
    db = make_engine(db_url)
    run_id = create_and_claim(db, cfg, "bench")["id"]
    marks: dict[int, float] = {}

    def on_step(step: int, total: int, loss: torch.Tensor) -> None:
        if cfg.device.startswith("cuda") or cfg.device == "auto" and torch.cuda.is_available():
            torch.cuda.synchronize()
        marks[step] = time.perf_counter()
        if step == warmup + steps:
            raise _Stop()

    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id), on_step=on_step, log=lambda m: None)
    try:
        train(cfg, ctx)
    except _Stop:
        pass
    return steps * cfg.batch_size / (marks[warmup + steps] - marks[warmup])


def ceiling_images_per_sec(cfg: RunConfig, warmup: int, steps: int) -> float:
    """Forward + backward + optimizer step only, on a tensor made once."""
    device = resolve_device(cfg.device)
    amp = autocast_dtype(cfg, device)
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, model)
    x = torch.randn(2 * cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            z = model(x)
        loss = nt_xent(z[: cfg.batch_size], z[cfg.batch_size:], cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - t0)


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
        t0 = time.perf_counter()
        for i in range(batches):
            x = images[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            aug(torch.cat([x, x]), gen)
        return n / (time.perf_counter() - t0)
    loader = torch.utils.data.DataLoader(ReferenceTwoViews(images, cfg.image_size, cfg.jitter_strength),
                                         batch_size=cfg.batch_size, num_workers=loader_workers())
    it = iter(loader)
    next(it)  # workers started and warm
    t0 = time.perf_counter()
    count = sum(len(v1) for v1, _ in it)
    return count / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stems", nargs="+", default=["imagenet", "cifar"])
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best of each is kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    os.environ.setdefault("SIMCLR_RUNS_DIR", str(tmp / "runs"))
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"warmup {args.warmup} + {args.steps} timed steps, best of {args.rounds} interleaved rounds")
    print(f"{'stem':<9} {'batch':>5} {'(a) engine':>11} {'(b) ceiling':>12} {'(c) reference':>14} "
          f"{'a/b':>6} {'a/c':>6}   {'aug-only: batched':>9} {'reference':>9}   images/s")
    for stem in args.stems:
        for batch in args.batches:
            n = batch * (args.warmup + args.steps)
            cfg = RunConfig(dataset="cifar10-mini", encoder="resnet18", stem=stem, batch_size=batch,
                            subset_size=min(n, 5000), epochs=1, device=args.device, eval_every=1000)
            # Interleaved rounds, best of each: on a shared, noisy machine the fastest run is the
            # one least disturbed by others, and interleaving exposes a, b and c to the same noise.
            a = b = c = 0.0
            for _ in range(args.rounds):
                a = max(a, engine_images_per_sec(cfg, db_url, args.warmup, args.steps))
                b = max(b, ceiling_images_per_sec(cfg, args.warmup, args.steps))
                c = float("nan") if args.skip_reference else max(c, engine_images_per_sec(
                    cfg.replace(augment_backend="reference"), db_url, args.warmup, args.steps))
            aug_b = augment_only_images_per_sec(cfg, "batched")
            aug_r = augment_only_images_per_sec(cfg, "reference")
            print(f"{stem:<9} {batch:>5} {a:>11.1f} {b:>12.1f} {c:>14.1f} {a / b:>6.2f} {a / c:>6.2f}"
                  f"   {aug_b:>9.0f} {aug_r:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
