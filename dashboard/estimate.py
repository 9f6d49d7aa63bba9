"""A rough time estimate per run, shown before launching.

Measured speed beats a model: when earlier runs with the same encoder, stem and image size logged
`train/images_per_sec` on the same kind of device, their median is used. Otherwise the estimate
comes from the forward cost per image (the GMAC figures in docs/design.md) and an assumed sustained rate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from db.config import KNOWN_SIZES, RunConfig
from db.datasets import pretrain_size

# Forward cost per 32x32 image in GMAC (docs/design.md); scales with the pixel count.
GMAC_AT_32 = {("resnet18", "cifar"): 0.56, ("resnet18", "imagenet"): 0.037,
              ("resnet50", "cifar"): 1.30, ("resnet50", "imagenet"): 0.084}
# Sustained training FLOP/s, deliberately modest. CUDA: the speed goal in docs/design.md, a CIFAR-10 epoch
# (100,000 views) of RN18-cifar in 4 s on an H100 is ~8e13; CPU: a few cores doing fp32 convs.
ASSUMED_FLOPS = {"cuda": 8e13, "cpu": 5e10}
# One training image = 2 views x (forward + backward ~ 3 forwards) x 2 FLOP per MAC.
TRAIN_FLOPS_PER_GMAC = 2 * 3 * 2 * 1e9
# Evaluation (kNN features, linear probe) embeds one view, forward only: ~1/6 of a training image.
EVAL_COST_RATIO = 1 / 6
# A run's process starts, imports torch and loads its data before the first step.
STARTUP_S = 15.0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # how it was obtained, for the caption next to the number


def device_kind(cfg: RunConfig, worker_devices: Sequence[str]) -> str:
    """Where the run will most likely train: its own device setting, else what live workers offer."""
    if cfg.device != "auto":
        return "cuda" if cfg.device.startswith("cuda") else "cpu"
    return "cuda" if any("cuda" in d for d in worker_devices) else "cpu"


def images_per_epoch(cfg: RunConfig) -> int | None:
    total = cfg.subset_size or pretrain_size(cfg)
    if total is None:
        return None
    return (total // cfg.batch_size) * cfg.batch_size  # the last partial batch is dropped


def _matches(cfg: RunConfig, kind: str, row: dict[str, Any]) -> bool:
    other = row["config"] or {}
    same_kind = ("cuda" in (row["device"] or "")) == (kind == "cuda")
    return same_kind and all(other.get(k) == getattr(cfg, k) for k in ("encoder", "stem", "image_size"))


def estimate(cfg: RunConfig, observed: Sequence[dict[str, Any]], worker_devices: Sequence[str]) -> Estimate | None:
    """Seconds for the whole run (training plus kNN and linear evaluation), or None if unknowable."""
    n = images_per_epoch(cfg)
    if n is None:
        return None
    kind = device_kind(cfg, worker_devices)
    speeds = [row["images_per_sec"] for row in observed if _matches(cfg, kind, row)]
    if speeds:
        ips = statistics.median(speeds)
        basis = f"measured: median of {len(speeds)} earlier run{'s' if len(speeds) != 1 else ''} on {kind}"
    else:
        gmac = GMAC_AT_32[(cfg.encoder, cfg.stem)] * (cfg.image_size / 32) ** 2
        ips = ASSUMED_FLOPS[kind] / (gmac * TRAIN_FLOPS_PER_GMAC)
        basis = f"rough: from the FLOP count on {kind}, no earlier run to measure"
    train_s = n * cfg.epochs / ips
    # kNN every eval_every epochs and at the end, then the linear probe: each embeds the labelled
    # train and test images once. Sizes unknown (imagefolder) -> the pretraining set stands in.
    evals = cfg.epochs // cfg.eval_every + 2
    sizes = KNOWN_SIZES.get(cfg.dataset)
    eval_images = sizes[1] + sizes[2] if sizes else n
    eval_s = evals * eval_images * EVAL_COST_RATIO / ips
    return Estimate(STARTUP_S + train_s + eval_s, basis)
