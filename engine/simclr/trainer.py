"""The SimCLR training loop: one readable function, in the spirit of nanoGPT's train.py.

Data lives in memory as uint8 tensors (on the training device when it is a GPU); each step
draws a batch of indices, makes two augmented views of every image on the device, runs both
views through the model in one pass and minimizes NT-Xent. Every epoch ends with a checkpoint;
the kNN monitor runs every `eval_every` epochs and at the end; the linear probe runs at the end.

The run's phase (training, kNN, linear probe, checkpoint) is recorded as it changes, and each
phase's wall time is logged (time/epoch_s, time/knn_s, time/linear_s, time/checkpoint_s): the
dashboard's estimates and ETAs are built from these measured times. A cancel request is honoured
between training steps and between evaluation batches.

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

from db.config import CHECKPOINT_FILE, RunConfig
from db.identity import database_id
from db.queries import delete_metrics_after, record_start, set_phase, update_run
from db.status import CHECKPOINT, KNN, PROBE, TRAINING
from engine.simclr import insights
from engine.simclr.artifacts import save_encoder, write_checkpoint_info
from engine.simclr.augment import BatchedAugment, ReferenceTwoViews
from engine.simclr.checkpoint import OWNER, CheckpointError, check_owner, discard_hint, load_checkpoint, save_checkpoint
from engine.simclr.data import ImageData, load_dataset
from engine.simclr.distributed import DataParallel, SilentLogger
from engine.simclr.evaluate import baseline_code_probe, extract_features, knn_top1, linear_eval, normalize
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
    # A finished run keeps its weights; the optimizer state (as large again) only when asked.
    keep_optimizer_state: bool = False
    dp: DataParallel | None = None  # set when this is one of the run's several processes

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def check_cancel(self) -> None:
        """Raise RunCancelled once a cancel was requested (called between steps and eval batches)."""
        if self.cancel.is_set():
            raise RunCancelled()


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


# Memory layout per device type, by measurement (BENCHMARKS.md): channels_last lets cuDNN use its
# NHWC tensor-core kernels, and on the CPU oneDNN's convolutions run faster in it too.
CHANNELS_LAST = {"cuda": True, "cpu": True}


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if CHANNELS_LAST.get(device.type, False) else torch.contiguous_format


def compile_enabled(cfg: RunConfig, device: torch.device) -> bool:
    """`compile` auto: on with CUDA; off on the CPU, where compiling takes minutes (BENCHMARKS.md)."""
    return cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")


def tune_backends(device: torch.device) -> None:
    """Process-wide settings that only make a run faster (each run has its own process)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every step has the same shapes: pick the fastest kernels once
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 loss and kNN matmuls


def steps_per_epoch(cfg: RunConfig, n_images: int) -> int:
    # Drop the last partial batch: NT-Xent's difficulty depends on the batch size.
    return n_images // cfg.batch_size


@dataclass
class Training:
    """What every optimisation step uses, built once per run (and by tests and bench/gpu_check.py)."""

    cfg: RunConfig
    device: torch.device
    data: ImageData
    images: torch.Tensor        # uint8 pretraining images, on the device
    eval_images: dict[str, torch.Tensor]  # "train"/"test" uint8 images for the kNN monitor, on the device
    mean: torch.Tensor          # [1,3,1,1] on the device
    std: torch.Tensor
    model: SimCLRModel          # the module itself: state_dict, evaluation
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled when cfg.compile says so
    compiled: bool
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: BatchedAugment
    aug_gen: torch.Generator
    shuffle_gen: torch.Generator
    n_steps: int
    amp: torch.dtype | None
    dp: DataParallel | None = None  # one of several processes (engine/simclr/distributed.py)

    @property
    def rank(self) -> int:
        return self.dp.rank if self.dp else 0

    @property
    def world(self) -> int:
        return self.dp.world if self.dp else 1

    def batches(self) -> Iterator[torch.Tensor]:
        """One epoch of this process's [2b,3,S,S] float batches in [0,1] (see `_batches`)."""
        return _batches(self.cfg, self.data, self.images, self.n_steps, self.shuffle_gen, self.device,
                        self.augment, self.aug_gen, self.rank, self.world)

    def step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimisation step on a batch from `batches`; returns the loss, detached, on the device.

        Nothing here reads a value back to the host (no .item(), no branch on a tensor), so on a GPU
        the host queues the next steps while this one runs (tests/engine/simclr/test_trainer.py and
        bench/gpu_check.py check it).
        """
        views = normalize(batch, self.mean, self.std).contiguous(memory_format=memory_format(self.device))
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            z = self.forward(views)
        half = len(views) // 2
        if self.dp:
            loss = self.dp.nt_xent(z[:half], z[half:], self.cfg.temperature)
        else:
            loss = nt_xent(z[:half], z[half:], self.cfg.temperature)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        # With several processes: the global batch's loss, for the metrics (a queued collective).
        return self.dp.mean(loss) if self.dp else loss.detach()

    def features(self, check: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
        """Encoder features of the labelled train and test images (eager: evaluation never compiles).

        `check` runs between batches (it raises RunCancelled once a cancel is requested)."""
        return {split: extract_features(self.model.encoder, imgs, self.mean, self.std, device=self.device,
                                        autocast_dtype=self.amp, memory_format=memory_format(self.device),
                                        batch_size=EVAL_BATCH.get(self.device.type, 64), check=check)
                for split, imgs in self.eval_images.items()}

    def knn(self, feats: dict[str, torch.Tensor], check: Callable[[], None] | None = None) -> float:
        return knn_top1(feats["train"], self.data.train_labels, feats["test"], self.data.test_labels,
                        k=self.cfg.knn_k, temperature=self.cfg.knn_temperature, check=check)


def build_training(cfg: RunConfig, device: torch.device, data: ImageData | None = None,
                   dp: DataParallel | None = None) -> Training:
    """Data on the device, model, optimizer, schedule, augmentation and generators (seeded)."""
    tune_backends(device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data = data or load_dataset(cfg)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    # Keep the images on the device: indexing a resident uint8 tensor is free, a host->device copy
    # per batch is not (50,000 CIFAR images are 150 MB). CIFAR's labelled train split is the
    # pretraining set itself: one copy serves both.
    images = data.pretrain_images.to(device)
    train_images = images if data.train_images is data.pretrain_images else data.train_images.to(device)
    n_steps = steps_per_epoch(cfg, len(images))
    model = build_model(cfg).to(device, memory_format=memory_format(device))
    rank = dp.rank if dp else 0
    if dp:
        model = dp.prepare(model)
        # Same initial weights everywhere (above); from here on each process draws its own randomness.
        torch.manual_seed(cfg.seed + rank * 2**32)
    compiled = compile_enabled(cfg, device)
    optimizer = build_optimizer(cfg, model)
    forward = dp.wrap(model) if dp else model  # evaluation and checkpoints use `model` itself
    return Training(
        cfg=cfg, device=device, data=data, images=images,
        eval_images={"train": train_images, "test": data.test_images.to(device)}, mean=mean, std=std,
        model=model, forward=torch.compile(forward) if compiled else forward, compiled=compiled,
        optimizer=optimizer, scheduler=build_scheduler(cfg, optimizer, n_steps),
        augment=BatchedAugment(cfg.image_size, cfg.jitter_strength),
        aug_gen=torch.Generator(device=device).manual_seed(cfg.seed + 1 + rank * 2**32),
        shuffle_gen=torch.Generator().manual_seed(cfg.seed + 2), n_steps=n_steps,
        amp=autocast_dtype(cfg, device), dp=dp)


def train(cfg: RunConfig, ctx: RunContext) -> dict[str, Any]:
    """Train (or resume) the run; returns its summary {final_loss, knn_top1, linear_loss, linear_top1}."""
    dp = ctx.dp
    device = dp.device if dp else resolve_device(cfg.device)
    main = dp is None or dp.is_main  # the process that writes metrics, checkpoints and evaluations
    t = build_training(cfg, device, dp=dp)
    data, n_steps = t.data, t.n_steps
    total_steps = cfg.epochs * n_steps

    start_epoch, step = 0, 0
    owner = {"database_id": database_id(ctx.db), "run_id": ctx.run_id}
    if ctx.checkpoint_path.exists():
        try:
            state = load_checkpoint(ctx.checkpoint_path, map_location=device)
            check_owner(state, ctx.checkpoint_path, owner, cfg.to_dict())
        except CheckpointError as e:
            raise CheckpointError(f"{e}; {discard_hint(ctx.run_id)}") from e
        t.model.load_state_dict(state["model"])
        start_epoch, step = state["epoch"], state["step"]
        if "optimizer" in state:  # absent once a finished run was slimmed; then no epoch is left to train
            t.optimizer.load_state_dict(state["optimizer"])
            t.scheduler.load_state_dict(state["scheduler"])
            # Generator states are CPU byte tensors whatever the generator's device.
            rng_cpu, rng_augment = state["rng_ranks"][t.rank] if dp else (state["rng_cpu"], state["rng_augment"])
            torch.set_rng_state(rng_cpu.cpu())
            t.aug_gen.set_state(rng_augment.cpu())
            t.shuffle_gen.set_state(state["rng_shuffle"].cpu())
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
    compiling = t.compiled  # the first step of this process compiles the model

    def phase(name: str) -> float:
        """Record the new phase (process 0 speaks for the run); returns its start time (for time/*)."""
        if main:
            set_phase(ctx.db, ctx.run_id, name)
        return time.perf_counter()

    def knn(step: int, epoch: float) -> tuple[dict[str, torch.Tensor], float]:
        t0 = phase(KNN)
        f = t.features(ctx.check_cancel)
        acc = t.knn(f, ctx.check_cancel)
        logger.log("knn/top1", acc, step, epoch)
        logger.log("time/knn_s", time.perf_counter() - t0, step, epoch)
        return f, acc

    for epoch in range(start_epoch, cfg.epochs):
        t.model.train()
        epoch_loss = torch.zeros((), device=device)
        epoch_start = phase(TRAINING)
        window_start, window_images = time.perf_counter(), 0
        for batch in t.batches():
            if _stop_requested(ctx):
                logger.flush()
                raise RunCancelled()
            lr = t.optimizer.param_groups[0]["lr"]  # the rate this step uses (the schedule then advances)
            loss = t.step(batch)
            step += 1
            epoch_loss += loss
            images_done = len(batch) // 2 * t.world
            if compiling:
                compiling = False
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if main:
                    ctx.log(f"torch.compile: the first step took {time.perf_counter() - window_start:.1f} s "
                            f"(compiling the model; left out of train/images_per_sec)")
                window_start, window_images = time.perf_counter(), -images_done
            window_images += images_done
            frac_epoch = epoch + (step - epoch * n_steps) / n_steps
            logger.log("train/loss", loss, step, frac_epoch)
            logger.log("train/lr", lr, step, frac_epoch)
            elapsed = time.perf_counter() - window_start
            if (elapsed >= 1.0 or step % n_steps == 0) and window_images > 0:
                logger.log("train/images_per_sec", window_images / elapsed, step, frac_epoch)
                window_start, window_images = time.perf_counter(), 0
            logger.set_progress(epoch=epoch, step=step)
            if ctx.on_step:
                ctx.on_step(step, total_steps, loss)

        mean_loss = (epoch_loss / n_steps).item()
        rng_ranks = dp.gather_to_main((torch.get_rng_state(), t.aug_gen.get_state())) if dp else None
        if not main:
            continue  # process 0 evaluates and checkpoints; the others wait in their next collective
        logger.log("epoch/loss", mean_loss, step, epoch + 1)
        logger.log("time/epoch_s", time.perf_counter() - epoch_start, step, epoch + 1)
        summary["final_loss"] = mean_loss
        if epoch + 1 == cfg.epochs or (epoch + 1) % cfg.eval_every == 0:
            feats, knn_acc = knn(step, epoch + 1)
            summary["knn_top1"] = knn_acc
        logger.set_progress(epoch=epoch + 1, step=step, final_loss=mean_loss, knn_top1=summary.get("knn_top1"))
        logger.flush()
        # Metrics first, then the checkpoint: a resumed run drops rows past the checkpoint's step.
        t0 = phase(CHECKPOINT)
        save_checkpoint(ctx.checkpoint_path, _checkpoint_state(cfg, owner, t, epoch + 1, step, rng_ranks))
        write_checkpoint_info(ctx.run_dir, epoch=epoch + 1, step=step)
        update_run(ctx.db, ctx.run_id, checkpoint_path=str(ctx.checkpoint_path))
        logger.log("time/checkpoint_s", time.perf_counter() - t0, step, epoch + 1)
        ctx.log(f"epoch {epoch + 1}/{cfg.epochs}: loss {mean_loss:.4f}"
                + (f", knn top-1 {knn_acc:.4f}" if knn_acc is not None else ""))

    # Linear probe on the final encoder: the last epoch always evaluates, so its features are at
    # hand, unless this process resumed after the last checkpoint and trained no epoch at all.
    if _stop_requested(ctx):
        raise RunCancelled()
    if not main:
        return {}
    if feats is None:
        feats, summary["knn_top1"] = knn(step, cfg.epochs)
    t0 = phase(PROBE)
    lin_loss, lin_top1 = probe(cfg, feats, data, ctx.check_cancel)
    logger.log("linear/loss", lin_loss, step, cfg.epochs)
    logger.log("linear/top1", lin_top1, step, cfg.epochs)
    logger.log("time/linear_s", time.perf_counter() - t0, step, cfg.epochs)
    logger.flush()
    summary.update(linear_loss=lin_loss, linear_top1=lin_top1)
    ctx.log(f"linear probe ({cfg.probe}): loss {lin_loss:.4f}, top-1 {lin_top1:.4f}")
    if ctx.cancel.is_set():
        raise RunCancelled()
    _save_results(cfg, ctx, t.model, data, feats, t.mean, t.std, device, t.amp, step)
    if not ctx.keep_optimizer_state:
        _drop_optimizer_state(ctx.checkpoint_path)
    return summary


def probe(cfg: RunConfig, feats: dict[str, torch.Tensor], data: ImageData,
          check: Callable[[], None] | None = None) -> tuple[float, float]:
    """The run's linear probe on frozen features: (test loss, test top-1); `check` runs between
    its batches (or L-BFGS evaluations) and raises once the run is cancelled."""
    if cfg.probe == "seed":
        return baseline_code_probe(feats["train"], data.train_labels, feats["test"], data.test_labels,
                                   epochs=cfg.probe_epochs, seed=cfg.seed, check=check)
    return linear_eval(feats["train"], data.train_labels, feats["test"], data.test_labels, check=check)


def _drop_optimizer_state(path: Path) -> None:
    """Rewrite a finished run's checkpoint with its weights only: the optimizer's state (LARS
    momentum: as large as the model) is only needed to train on, and runs add up to gigabytes."""
    if not path.exists():
        return
    state = load_checkpoint(path)
    if "optimizer" in state:
        keep = ("model", "epoch", "step", "config", OWNER)
        save_checkpoint(path, {k: state[k] for k in keep if k in state})


def _save_results(cfg: RunConfig, ctx: RunContext, model: SimCLRModel, data: ImageData,
                  feats: dict[str, torch.Tensor], mean: torch.Tensor, std: torch.Tensor, device: torch.device,
                  amp: torch.dtype | None, step: int) -> None:
    """The encoder alone and the insights (neighbours, 2-D map), once, from the final model.

    Extras for people: the run's results are already stored, so a failure here (a full disk, say)
    is logged and leaves the run completed; the run page then says the file is missing.
    """
    try:
        save_encoder(ctx.run_dir, model.encoder, cfg, feature_dim=model.feature_dim, epoch=cfg.epochs, step=step,
                     mean=data.mean, std=data.std)
    except Exception as e:  # noqa: BLE001
        ctx.log(f"encoder.pt not written: {type(e).__name__}: {e}")
    started = time.perf_counter()
    try:
        insights.save(ctx.run_dir, insights.compute(cfg, data, feats, mean, std, device, amp))
        ctx.log(f"insights (nearest neighbours, 2-D map of the features) in {time.perf_counter() - started:.1f} s")
    except Exception as e:  # noqa: BLE001
        ctx.log(f"insights not written: {type(e).__name__}: {e}")


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


# Images per evaluation batch. Cancel is checked between batches, so a batch must take well under a
# second: a GPU embeds 512 images in milliseconds, a CPU needs seconds for that many.
EVAL_BATCH = {"cuda": 512, "cpu": 64}


def _checkpoint_state(cfg: RunConfig, owner: dict[str, Any], t: Training, epoch: int, step: int,
                      rng_ranks: list[Any] | None = None) -> dict[str, Any]:
    state = {
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
        "epoch": epoch, "step": step, "config": cfg.to_dict(), OWNER: owner, "rng_cpu": torch.get_rng_state(),
        "rng_augment": t.aug_gen.get_state(), "rng_shuffle": t.shuffle_gen.get_state(),
    }
    if rng_ranks is not None:  # several processes: each one's (CPU, augmentation) generator states, by rank
        state["rng_ranks"] = rng_ranks
    return state
