"""Optimizers (LARS, Adam, SGD) and the learning-rate schedules.

Three recipes are expressed with the same config fields (db/config.py), not with hidden modes:
  ours / SimCLR   LARS, eta 0.001, BatchNorm and biases excluded, warm-up then per-step cosine.
  the seed's code (Spijkervet/SimCLR, model.py + simclr/modules/lars.py): LARS whose exclude lists
                  are never consulted (lars_exclude=none), a trust ratio computed even for zero
                  weights (lars_zero_norm=freeze), per-epoch cosine without warm-up
                  (schedule=cosine_per_epoch); Adam at a constant 3e-4 without weight decay.
  solo-learn's CIFAR SimCLR (scripts/pretrain/cifar/simclr.yaml, solo/utils/lars.py): LARS,
                  eta 0.02, clip_lr, BatchNorm and biases excluded, weight decay 1e-4, warm-up
                  then cosine.
Where ours still differs: the seed's LARS puts the learning rate inside the momentum buffer
("classic" momentum: v = m v + lr trust g; w -= v), ours outside it (v = m v + trust g;
w -= lr v) -- the same while lr is constant, i.e. within each of the seed's epochs. solo-learn
divides by |g| + wd |w| where ours (and SimCLR's) divides by |g + wd w|; it warms up from 3e-5,
ours from lr / warm-up steps.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from db.config import RunConfig


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017), as SimCLR uses it.

    For each parameter tensor not excluded: g <- g + wd * w, then g <- g * trust, with
    trust = trust_coefficient * ||w|| / ||g|| (1 when either norm is 0), then SGD momentum.
    Excluded tensors (BatchNorm weights and all biases; groups with `lars_exclude=True`) get
    neither weight decay nor adaptation: scaling a bias by its own tiny norm would freeze it.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,  # noqa: ANN001
                 trust_coefficient: float = 0.001, clip_lr: bool = False, freeze_zero_norm: bool = False):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars_exclude=False)
        super().__init__(params, defaults)
        # Not per group: they describe the variant of LARS, not a kind of parameter.
        self.clip_lr, self.freeze_zero_norm = clip_lr, freeze_zero_norm

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["lars_exclude"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    ratio = group["trust_coefficient"] * w_norm / g_norm.clamp_min(torch.finfo(g.dtype).tiny)
                    # freeze: the seed's `w_norm.ge(0)` test is always true, so a zero weight gets 0.
                    usable = (g_norm > 0) if self.freeze_zero_norm else (w_norm > 0) & (g_norm > 0)
                    trust = torch.where(usable, ratio, torch.ones_like(w_norm))
                    if self.clip_lr:  # solo-learn's clip_lr: the tensor's rate lr x trust' = min(trust, lr)
                        trust = torch.clamp(trust / group["lr"], max=1.0)
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def split_decay_groups(model: nn.Module, weight_decay: float, exclude_vectors: bool = True) -> list[dict]:
    """Two parameter groups: weights (decayed, adapted) and BatchNorm/bias vectors (neither).

    Every 1-D parameter in a ResNet + MLP head is a BatchNorm scale/shift or a bias. With
    `exclude_vectors=False` (the seed's code) every parameter is in the first group.
    """
    decay, exclude = [], []
    for p in model.parameters():
        if p.requires_grad:
            (exclude if exclude_vectors and p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": exclude, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    # lars_exclude is LARS's setting; Adam and SGD always spare BatchNorm and biases from decay.
    groups = split_decay_groups(model, cfg.weight_decay,
                                exclude_vectors=cfg.optimizer != "lars" or cfg.lars_exclude == "bn_bias")
    lr = cfg.effective_lr
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay,
                    trust_coefficient=cfg.lars_trust_coefficient, clip_lr=cfg.lars_clip_lr == "yes",
                    freeze_zero_norm=cfg.lars_zero_norm == "freeze")
    for g in groups:
        g.pop("lars_exclude")  # a LARS-only option; torch's optimizers reject unknown keys
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: linear from 1/warmup to 1 over warmup_steps, then cosine down to 0 at total_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def cosine_per_epoch(step: int, steps_per_epoch: int, epochs: int) -> float:
    """LR multiplier of torch's CosineAnnealingLR(T_max=epochs, eta_min=0) stepped once per epoch,
    as the seed's main.py does: constant within an epoch, 1 in the first."""
    return 0.5 * (1.0 + math.cos(math.pi * min(epochs, step // steps_per_epoch) / epochs))


def lr_multiplier(cfg: RunConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The schedule as a function of the step (steps taken so far), for the run's config."""
    if cfg.schedule == "constant":
        return lambda s: 1.0
    if cfg.schedule == "cosine_per_epoch":
        return lambda s: cosine_per_epoch(s, steps_per_epoch, cfg.epochs)
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.effective_warmup_epochs * steps_per_epoch)
    return lambda s: warmup_cosine(s, warmup, total)


def build_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps_per_epoch))
