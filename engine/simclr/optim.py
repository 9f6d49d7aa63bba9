"""Optimizers (LARS, Adam, SGD) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

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
                 trust_coefficient: float = 0.001):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars_exclude=False)
        super().__init__(params, defaults)

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
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * w_norm / g_norm, torch.ones_like(w_norm))
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def split_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: weights (decayed, adapted) and BatchNorm/bias vectors (neither).

    Every 1-D parameter in a ResNet + MLP head is a BatchNorm scale/shift or a bias.
    """
    decay, exclude = [], []
    for p in model.parameters():
        if p.requires_grad:
            (exclude if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": exclude, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = split_decay_groups(model, cfg.weight_decay)
    lr = cfg.effective_lr
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=0.9, weight_decay=cfg.weight_decay, trust_coefficient=0.001)
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


def build_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.effective_warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total))
