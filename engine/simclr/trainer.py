"""The SimCLR training loop: one readable function, in the spirit of nanoGPT's train.py.

Data lives in memory as uint8 tensors (on the training device when it is a GPU); each step
draws a batch of indices, makes two augmented views of every image on the device, runs both
views through the model in one pass and minimizes NT-Xent. Every epoch ends with a checkpoint;
the kNN monitor runs every `eval_every` epochs and at the end; the linear probe runs at the end.

With `devices` > 1 the same function runs in every process of the run; `ctx.dp` then carries the
data-parallel hooks (engine/simclr/distributed.py) and `dp` lines below are the only differences.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from sqlalchemy import Engine

from db.config import RunConfig
from db.queries import delete_metrics_after, record_start, update_run
from engine.simclr.augment import BatchedAugment, ReferenceTwoViews
from engine.simclr.checkpoint import load_checkpoint, save_checkpoint
from engine.simclr.data import ImageData, load_dataset
from engine.simclr.distributed import DataParallel, SilentLogger
from engine.simclr.evaluate import extract_features, knn_top1, linear_eval, normalize
from engine.simclr.loss import nt_xent
from engine.simclr.metrics_log import MetricLogger
from engine.simclr.model import SimCLRModel, build_model
from engine.simclr.optim import build_optimizer, build_scheduler


class RunCancelled(Exception):
    """Raised at a step boundary once a cancel was requested; the last checkpoint stays."""


@dataclass
class RunContext:
    """What a training run needs besides its config: where to write and how to be stopped."""

    db: Engine
    run_id: int
    run_dir: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    on_step: Callable[[int, int, float], None] | None = None  # (step, total_steps, loss): progress display
    log: Callable[[str], None] = print
    dp: DataParallel | None = None  # set when this is one of the run's several processes

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available here; use device=auto or cpu")
    return device


def autocast_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); plain fp32 on the CPU."""
    if cfg.precision == "fp32" or (cfg.precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def steps_per_epoch(cfg: RunConfig, n_images: int) -> int:
    # Drop the last partial batch: NT-Xent's difficulty depends on the batch size.
    return n_images // cfg.batch_size


def train(cfg: RunConfig, ctx: RunContext) -> dict[str, Any]:
    """Train (or resume) the run; returns its summary {final_loss, knn_top1, linear_loss, linear_top1}."""
    dp = ctx.dp
    device = dp.device if dp else resolve_device(cfg.device)
    rank, world = (dp.rank, dp.world) if dp else (0, 1)
    main = dp is None or dp.is_main  # the process that writes metrics, checkpoints and evaluations
    amp = autocast_dtype(cfg, device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    data = load_dataset(cfg)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    # Keep the pretraining images on the device: indexing a resident uint8 tensor is free,
    # a host->device copy per batch is not (50,000 CIFAR images are 150 MB).
    images = data.pretrain_images.to(device)
    n_steps = steps_per_epoch(cfg, len(images))
    total_steps = cfg.epochs * n_steps

    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if dp:
        model = dp.prepare(model)
        # Same initial weights everywhere (above); from here on each process draws its own randomness.
        torch.manual_seed(cfg.seed + rank * 2**32)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, n_steps)
    forward = dp.wrap(model) if dp else model  # evaluation and checkpoints use `model` itself
    augment = BatchedAugment(cfg.image_size, cfg.jitter_strength)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + rank * 2**32)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 2)

    start_epoch, step = 0, 0
    if ctx.checkpoint_path.exists():
        state = load_checkpoint(ctx.checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"], state["step"]
        # Generator states are CPU byte tensors whatever the generator's device.
        rng_cpu, rng_augment = state["rng_ranks"][rank] if dp else (state["rng_cpu"], state["rng_augment"])
        torch.set_rng_state(rng_cpu.cpu())
        aug_gen.set_state(rng_augment.cpu())
        shuffle_gen.set_state(state["rng_shuffle"].cpu())
        if main:
            # Rows written after the checkpoint are replayed by this resumed run: drop them first.
            dropped = delete_metrics_after(ctx.db, ctx.run_id, step)
            ctx.log(f"resumed from {ctx.checkpoint_path} at epoch {start_epoch}, step {step} "
                    f"(dropped {dropped} metric rows written after it)")

    if main:
        record_start(ctx.db, ctx.run_id, total_steps=total_steps, device=str(device),
                     subset_indices=data.pretrain_indices.tolist() if cfg.subset_size else None)
    logger = MetricLogger(ctx.db, ctx.run_id) if main else SilentLogger()
    summary: dict[str, Any] = {}
    knn_acc = None
    feats: dict[str, torch.Tensor] | None = None  # set by the last epoch's evaluation

    def knn(f: dict[str, torch.Tensor]) -> float:
        return knn_top1(f["train"], data.train_labels, f["test"], data.test_labels,
                        k=cfg.knn_k, temperature=cfg.knn_temperature)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        epoch_loss = torch.zeros((), device=device)
        window_start, window_images = time.perf_counter(), 0
        for batch in _batches(cfg, data, images, n_steps, shuffle_gen, device, augment, aug_gen, rank, world):
            if _stop_requested(ctx):
                logger.flush()
                raise RunCancelled()
            views = normalize(batch, mean, std)
            if device.type == "cuda":
                views = views.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                z = forward(views)
            half = len(views) // 2
            loss = dp.nt_xent(z[:half], z[half:], cfg.temperature) if dp else \
                nt_xent(z[:half], z[half:], cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if dp:
                loss = dp.mean(loss)  # the global batch's loss, for the metrics

            step += 1
            epoch_loss += loss.detach()
            window_images += half * world
            frac_epoch = epoch + (step - epoch * n_steps) / n_steps
            logger.log("train/loss", loss, step, frac_epoch)
            logger.log("train/lr", lr, step, frac_epoch)
            elapsed = time.perf_counter() - window_start
            if elapsed >= 1.0 or step % n_steps == 0:
                logger.log("train/images_per_sec", window_images / elapsed, step, frac_epoch)
                window_start, window_images = time.perf_counter(), 0
            logger.set_progress(epoch=epoch, step=step)
            if ctx.on_step:
                ctx.on_step(step, total_steps, loss)

        mean_loss = (epoch_loss / n_steps).item()
        rng_ranks = dp.gather_to_main((torch.get_rng_state(), aug_gen.get_state())) if dp else None
        if not main:
            continue  # process 0 evaluates and checkpoints; the others wait in their next collective
        logger.log("epoch/loss", mean_loss, step, epoch + 1)
        summary["final_loss"] = mean_loss
        if epoch + 1 == cfg.epochs or (epoch + 1) % cfg.eval_every == 0:
            feats = _features(model, data, mean, std, device, amp)
            knn_acc = knn(feats)
            logger.log("knn/top1", knn_acc, step, epoch + 1)
            summary["knn_top1"] = knn_acc
        logger.set_progress(epoch=epoch + 1, step=step, final_loss=mean_loss, knn_top1=summary.get("knn_top1"))
        logger.flush()
        # Metrics first, then the checkpoint: a resumed run drops rows past the checkpoint's step.
        save_checkpoint(ctx.checkpoint_path, _checkpoint_state(cfg, model, optimizer, scheduler, epoch + 1, step,
                                                               aug_gen, shuffle_gen, rng_ranks))
        update_run(ctx.db, ctx.run_id, checkpoint_path=str(ctx.checkpoint_path))
        ctx.log(f"epoch {epoch + 1}/{cfg.epochs}: loss {mean_loss:.4f}"
                + (f", knn top-1 {knn_acc:.4f}" if knn_acc is not None else ""))

    # Linear probe on the final encoder: the last epoch always evaluates, so its features are at
    # hand, unless this process resumed after the last checkpoint and trained no epoch at all.
    if _stop_requested(ctx):
        raise RunCancelled()
    if not main:
        return {}
    if feats is None:
        feats = _features(model, data, mean, std, device, amp)
        summary["knn_top1"] = knn(feats)
    lin_loss, lin_top1 = linear_eval(feats["train"], data.train_labels, feats["test"], data.test_labels)
    logger.log("linear/loss", lin_loss, step, cfg.epochs)
    logger.log("linear/top1", lin_top1, step, cfg.epochs)
    logger.flush()
    summary.update(linear_loss=lin_loss, linear_top1=lin_top1)
    ctx.log(f"linear probe: loss {lin_loss:.4f}, top-1 {lin_top1:.4f}")
    return summary


def _stop_requested(ctx: RunContext) -> bool:
    """A cancel (or a lost claim) seen by the heartbeat; with several processes, process 0's word for all."""
    return ctx.dp.stop_requested(ctx.cancel.is_set()) if ctx.dp else ctx.cancel.is_set()


def _batches(cfg: RunConfig, data: ImageData, images: torch.Tensor, n_steps: int, shuffle_gen: torch.Generator,
             device: torch.device, augment: BatchedAugment, aug_gen: torch.Generator,
             rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """One epoch of [2b,3,S,S] float batches: the b first views, then the b second views.

    b = batch_size / world: process `rank` of `world` takes its contiguous share of each step's
    images (the shuffle is the same in every process), so the shares make up the global batch.
    """
    per = cfg.batch_size // world
    order = torch.randperm(len(images), generator=shuffle_gen)
    mine = order[: n_steps * cfg.batch_size].view(n_steps, world, per)[:, rank].reshape(-1)
    if cfg.augment_backend == "reference":
        # The seed's pipeline: per-image PIL transforms in DataLoader workers (for parity checks).
        source = ReferenceTwoViews(data.pretrain_images, cfg.image_size, cfg.jitter_strength)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(source, mine.tolist()),
                                             batch_size=per, num_workers=loader_workers(), drop_last=True)
        for v1, v2 in loader:
            yield torch.cat([v1, v2]).to(device, non_blocking=True)
        return
    mine = mine.to(device)
    for i in range(n_steps):
        x = images[mine[i * per:(i + 1) * per]]
        # One call for both views: every row still draws its own parameters, so the two copies
        # of an image get independent views, and the fixed per-call cost is paid once.
        yield augment(torch.cat([x, x]), aug_gen)


def loader_workers() -> int:
    """DataLoader workers for the reference backend: one per core, at most 4."""
    return min(4, os.cpu_count() or 1)


def _features(model: SimCLRModel, data: ImageData, mean: torch.Tensor, std: torch.Tensor, device: torch.device,
              amp: torch.dtype | None) -> dict[str, torch.Tensor]:
    return {split: extract_features(model.encoder, imgs, mean, std, device=device, autocast_dtype=amp)
            for split, imgs in (("train", data.train_images), ("test", data.test_images))}


def _checkpoint_state(cfg: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      scheduler: Any, epoch: int, step: int, aug_gen: torch.Generator,
                      shuffle_gen: torch.Generator, rng_ranks: list[Any] | None = None) -> dict[str, Any]:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": epoch, "step": step, "config": cfg.to_dict(),
        "rng_cpu": torch.get_rng_state(), "rng_augment": aug_gen.get_state(), "rng_shuffle": shuffle_gen.get_state(),
    }
    if rng_ranks is not None:  # several processes: each one's (CPU, augmentation) generator states, by rank
        state["rng_ranks"] = rng_ranks
    return state
