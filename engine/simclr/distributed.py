"""One run over several processes (data-parallel), one per device, started by torchrun.

Everything a run does differently with `devices` > 1 lives here; the trainer calls these hooks
only when the runner joined a process group (`join`), so a one-device run never creates one.

How the pieces fit:
- The global batch (`batch_size`) is split evenly: every process takes its own contiguous share
  of each step's images (same shuffle on every process) and draws its own augmentations.
- NT-Xent is the loss of the whole global batch: each process's views are anchors against the
  views of all processes, gathered by `gather_with_grad`, whose backward sums every process's
  gradient for a slice back to the process that owns it. (A gather whose backward hands each
  process only its own slice of the gradient, as some SimCLR code does, drops the other
  processes' terms and trains a different loss; the tests check both.) DDP then averages the
  parameter gradients, so the update equals that of one process on the whole batch.
- SyncBatchNorm (on GPUs) computes BatchNorm statistics over the global batch, as SimCLR's
  global BN does; without it each process normalises its share alone.
- Process 0 alone writes to the database and the run folder (metrics, heartbeats, checkpoints,
  kNN, the linear probe); the others wait in their next collective meanwhile. A cancel seen by
  process 0's heartbeat reaches all of them through `stop_requested`, checked at every step on a
  CPU (gloo) group, so the check never waits for the GPU.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from db.config import RunConfig
from engine.simclr.loss import nt_xent

# Process 0 evaluates and checkpoints while the others wait in a collective: the timeout must
# outlast the longest evaluation (the kNN monitor and linear probe on the full data set).
TIMEOUT = timedelta(minutes=float(os.environ.get("SIMCLR_DIST_TIMEOUT_MIN", "60")))


def launched() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@dataclass
class DataParallel:
    rank: int
    world: int
    device: torch.device
    sync_batchnorm: bool
    control: Any  # a gloo process group for flags and small objects: collectives that never wait for the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- model
    def prepare(self, model: nn.Module) -> nn.Module:
        """SyncBatchNorm in place of BatchNorm when asked; call before the optimizer sees the parameters."""
        return nn.SyncBatchNorm.convert_sync_batchnorm(model) if self.sync_batchnorm else model

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP: the same initial weights on every process (process 0's), gradients averaged in backward.

        The trainer keeps the unwrapped model for evaluation and checkpoints (their keys then match
        a one-device run's); only the training forward goes through the wrapper.
        """
        ids = [self.device.index] if self.device.type == "cuda" else None
        # No buffer broadcast each step: BatchNorm's running statistics are only read by process
        # 0's evaluation, and with SyncBatchNorm they are the same on every process anyway.
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    # ---------------------------------------------------------------- loss
    def nt_xent(self, z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
        """This process's share of the global NT-Xent; averaged over processes (as DDP averages
        gradients) it is the loss of one process on the whole batch."""
        return sharded_nt_xent(z1, z2, temperature, self.rank, gather_with_grad)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a detached scalar over processes (the global loss, for the metrics); queued
        on the device like any collective, so it does not make the host wait for the GPU."""
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world

    # ---------------------------------------------------------------- coordination
    def stop_requested(self, local: bool) -> bool:
        """Process 0's answer to "stop now?" (its heartbeat saw a cancel), given to every process."""
        flag = torch.tensor([int(local)], dtype=torch.int32)
        dist.broadcast(flag, src=0, group=self.control)
        return bool(flag.item())

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every process's `obj`, in rank order, on process 0 (None elsewhere)."""
        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.control)
        return out


Gather = Callable[[torch.Tensor], list[torch.Tensor]]


def sharded_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, rank: int,
                    gather: Gather) -> torch.Tensor:
    """NT-Xent of this process's views (anchors) against the views of all processes (`gather`)."""
    n = len(z1)
    # One gather for both views: [z1; z2] of process 0, then of process 1, ...
    parts = gather(torch.cat([z1, z2]))
    keys = (torch.cat([p[:n] for p in parts]), torch.cat([p[n:] for p in parts]))
    return nt_xent(z1, z2, temperature, keys=keys, offset=rank * n)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; in backward, the sum over processes of the gradient for each slice.

    Every process's loss depends on every process's slice, so the gradient for this process's
    slice has a term from each process's loss: all-reduce the full gradient, keep our slice.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        total = torch.stack(grads)
        dist.all_reduce(total)
        return total[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> list[torch.Tensor]:
    return list(_GatherWithGrad.apply(x))


class SilentLogger:
    """The MetricLogger of processes other than 0: they write nothing (process 0 logs the global loss)."""

    def log(self, name: str, value: Any, step: int, epoch: float) -> None:
        pass

    def set_progress(self, **values: Any) -> None:
        pass

    def flush(self) -> None:
        pass


def join(cfg: RunConfig, device: torch.device) -> DataParallel:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the environment).

    `device` is the run's resolved device; with CUDA each process takes the GPU of its local rank
    (the executor made exactly `devices` GPUs visible). NCCL between GPUs, gloo between CPU
    processes; a gloo group beside NCCL carries the per-step stop flag.
    """
    if not launched():
        raise RuntimeError(f"the run asks for devices={cfg.devices}: start it as {cfg.devices} processes with "
                           "torchrun (the worker and `python -m engine train` do)")
    world, rank = int(os.environ["WORLD_SIZE"]), env_rank()
    if world != cfg.devices:
        raise RuntimeError(f"the run asks for devices={cfg.devices} but was started as {world} processes")
    _die_with_parent()
    cuda = device.type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", rank))
        if torch.cuda.device_count() < world:
            raise RuntimeError(f"devices={world} but only {torch.cuda.device_count()} GPU(s) are visible "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise RuntimeError(f"devices > 1 runs on CUDA or the CPU, not {device.type}")
    if cfg.sync_batchnorm == "on" and not cuda:
        raise RuntimeError("sync_batchnorm=on needs GPUs (torch's SyncBatchNorm has no CPU version); "
                           "this run resolved to the CPU: use sync_batchnorm=auto or off")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT, device_id=device if cuda else None)
    control = dist.new_group(backend="gloo", timeout=TIMEOUT) if cuda else dist.group.WORLD
    return DataParallel(rank=rank, world=world, device=device, control=control,
                        sync_batchnorm=cuda and cfg.sync_batchnorm != "off")


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when torchrun (its parent) dies.

    torchrun starts each process in a session of its own, so neither the worker's kill of the
    run's process group nor the worker's own death (PR_SET_PDEATHSIG on torchrun) reaches them;
    without this they would train on unsupervised after torchrun is gone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
