"""How long a run will take (before launching) and how long a running run has left (its ETA).

Measured times beat a model. The trainer logs each phase's wall time (time/epoch_s, time/knn_s,
time/linear_s, time/checkpoint_s; db.views.run_timings collects them from completed runs of one
attempt, never cancelled ones). A run is estimated from the runs like it:
- training speed (images/s) from finished runs with the same device kind, encoder, stem, image
  size and batch size: speed depends on all five;
- kNN and linear-probe time from finished runs with the same device kind, encoder, stem and image
  size (the batch size does not matter there), scaled by the number of labelled images;
- the rest (process start, data loading, checkpoints) from finished runs on the same device kind.
Only when no finished run is like it does a model stand in: the forward cost per image (GMAC, docs/design.md),
turned into seconds by the FLOP rate the finished runs on this device kind achieved (calibrated),
or, with no finished run at all, by an assumed rate measured once on a reference machine.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from db.config import KNOWN_SIZES, RunConfig
from db.datasets import pretrain_size
from db.status import KNN, PROBE, RUNNING, STARTING

# Forward cost per 32x32 image in GMAC (docs/design.md); scales with the pixel count.
GMAC_AT_32 = {("resnet18", "cifar"): 0.56, ("resnet18", "imagenet"): 0.037,
              ("resnet50", "cifar"): 1.30, ("resnet50", "imagenet"): 0.084}
# Sustained training FLOP/s when no finished run says better, by device kind and stem. CUDA: the goal
# in docs/design.md of a CIFAR-10 epoch (100,000 views) of RN18-cifar in 4 s on an H100 is ~8e13,
# deliberately modest; CPU: what the engine's step reached on the 2-core test machine, quiet
# (BENCHMARKS.md: 24 images/s x 0.56 GMAC x 12 with the cifar stem = 1.6e11; the quick preset's
# imagenet stem ran 482 images/s x 0.037 x 12 = 2.1e11, rounded down). At one modest 1e11 for both
# the form promised the quick preset's 7 minutes as 16.
ASSUMED_FLOPS = {("cuda", "cifar"): 8e13, ("cuda", "imagenet"): 8e13,
                 ("cpu", "cifar"): 1.6e11, ("cpu", "imagenet"): 1.9e11}
# One training image = 2 views x (forward + backward ~ 3 forwards) x 2 FLOP per MAC.
TRAIN_FLOPS_PER_GMAC = 2 * 3 * 2 * 1e9
# Evaluation embeds one view, forward only: ~1/6 of a training image.
EVAL_COST_RATIO = 1 / 6
# Rough values for the parts a FLOP count does not cover, from tiny runs on the test machine (CPU);
# any finished run replaces them with its own measurements.
STARTUP_S = 15.0  # the process starts, imports torch, loads its data
LINEAR_S_PER_IMAGE = 3e-3  # L-BFGS on 512-d features, per labelled training image
CHECKPOINT_S = 0.3


@dataclass(frozen=True)
class Parts:
    """The pieces of a run's time: what each phase costs, and where those figures came from."""

    images_per_s: float  # training
    knn_pass_s: float  # one kNN evaluation (features of the labelled images + the vote)
    linear_s: float  # the linear probe at the end
    checkpoint_s: float  # per epoch
    overhead_s: float  # start-up and everything else not measured as a phase
    basis: str

    def total(self, cfg: RunConfig, images_per_epoch: int) -> float:
        return (self.overhead_s + images_per_epoch * cfg.epochs / self.images_per_s
                + knn_passes(cfg, 0) * self.knn_pass_s + self.linear_s + cfg.epochs * self.checkpoint_s)


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


def knn_passes(cfg: RunConfig, epochs_done: int) -> int:
    """kNN passes still to come after `epochs_done` epochs: every eval_every epochs and at the end."""
    return sum(1 for e in range(epochs_done + 1, cfg.epochs + 1) if e % cfg.eval_every == 0 or e == cfg.epochs)


def _labelled(cfg: RunConfig) -> tuple[int, int] | None:
    sizes = KNOWN_SIZES.get(cfg.dataset)
    return (sizes[1], sizes[2]) if sizes else None


def _gmac(cfg: RunConfig) -> float:
    return GMAC_AT_32[(cfg.encoder, cfg.stem)] * (cfg.image_size / 32) ** 2


def _kind_of(device: str | None) -> str:
    return "cuda" if "cuda" in (device or "") else "cpu"


def _like(cfg: RunConfig, kind: str, run: Mapping[str, Any], keys: Sequence[str]) -> bool:
    other = run["config"] or {}
    return _kind_of(run["device"]) == kind and all(other.get(k) == getattr(cfg, k) for k in keys)


def _trained_ips(run: Mapping[str, Any]) -> float | None:
    """Images per second over a finished run's epochs (warm-up included: that is what a run costs)."""
    cfg = RunConfig.from_dict(run["config"])
    n = images_per_epoch(cfg)
    seconds = sum(run["time/epoch_s"])
    return n * len(run["time/epoch_s"]) / seconds if n and seconds > 0 else None


def _scaled(value: float, cfg: RunConfig, run: Mapping[str, Any], part: int) -> float:
    """An evaluation time of `run` scaled to `cfg`'s number of labelled images (`part`: 0 train, 1 train+test)."""
    mine, theirs = _labelled(cfg), _labelled(RunConfig.from_dict(run["config"]))
    if not mine or not theirs:
        return value
    n = (lambda s: s[0] if part == 0 else s[0] + s[1])
    return value * n(mine) / n(theirs)


def _probe(cfg: RunConfig) -> tuple[str, int | None]:
    return cfg.probe, cfg.probe_epochs if cfg.probe == "seed" else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def parts(cfg: RunConfig, history: Sequence[Mapping[str, Any]], kind: str) -> Parts:
    """The cost of each phase of `cfg` on `kind`, from the finished runs in `history` where possible."""
    on_kind = [r for r in history if _kind_of(r["device"]) == kind]
    same_model = [r for r in on_kind if _like(cfg, kind, r, ("encoder", "stem", "image_size"))]
    same_train = [r for r in same_model if _like(cfg, kind, r, ("batch_size",))]

    ips = _median([v for v in map(_trained_ips, same_train) if v])
    if ips:
        basis = f"measured: {len(same_train)} finished run{'s' if len(same_train) != 1 else ''} like it on {kind}"
    else:
        # Calibrated model: the FLOP rate the finished runs on this device kind achieved, with the
        # same stem where there are such runs (the stems reach different rates: ASSUMED_FLOPS).
        same_stem = [r for r in on_kind if (r["config"] or {}).get("stem") == cfg.stem]
        rates = [v * _gmac(RunConfig.from_dict(r["config"])) * TRAIN_FLOPS_PER_GMAC
                 for r in (same_stem or on_kind) for v in [_trained_ips(r)] if v]
        flops = _median(rates) or ASSUMED_FLOPS[kind, cfg.stem]
        ips = flops / (_gmac(cfg) * TRAIN_FLOPS_PER_GMAC)
        basis = (f"model calibrated on {len(rates)} finished run{'s' if len(rates) != 1 else ''} on {kind}"
                 if rates else f"rough: FLOP count on {kind}, no finished run to measure")

    labelled = _labelled(cfg)
    model_knn = (sum(labelled) if labelled else images_per_epoch(cfg) or 0) * EVAL_COST_RATIO / ips
    knn = _median([_scaled(statistics.mean(r["time/knn_s"]), cfg, r, 1) for r in same_model if r["time/knn_s"]])
    # The probe's time also depends on which probe (L-BFGS or the seed's 500 Adam epochs).
    same_probe = [r for r in same_model if _probe(RunConfig.from_dict(r["config"])) == _probe(cfg)]
    linear = _median([_scaled(r["time/linear_s"][-1], cfg, r, 0) for r in same_probe if r["time/linear_s"]])
    model_linear = (labelled[0] if labelled else images_per_epoch(cfg) or 0) * LINEAR_S_PER_IMAGE * \
        (4 if cfg.encoder == "resnet50" else 1)  # 2048-d features instead of 512
    checkpoint = _median([statistics.mean(r["time/checkpoint_s"]) for r in same_model if r["time/checkpoint_s"]])
    overhead = _median([max(0.0, r["duration_s"] - sum(r["time/epoch_s"]) - sum(r["time/knn_s"])
                            - sum(r["time/linear_s"]) - sum(r["time/checkpoint_s"])) for r in on_kind])
    return Parts(images_per_s=ips, knn_pass_s=knn if knn is not None else model_knn,
                 linear_s=linear if linear is not None else model_linear,
                 checkpoint_s=checkpoint if checkpoint is not None else CHECKPOINT_S,
                 overhead_s=overhead if overhead is not None else STARTUP_S, basis=basis)


def estimate(cfg: RunConfig, history: Sequence[Mapping[str, Any]], worker_devices: Sequence[str]) -> Estimate | None:
    """Seconds for the whole run (start-up, training, kNN passes, linear probe), or None if unknowable."""
    n = images_per_epoch(cfg)
    if n is None:
        return None
    p = parts(cfg, history, device_kind(cfg, worker_devices))
    return Estimate(p.total(cfg, n), p.basis)


def eta_s(run: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> float | None:
    """Seconds a running run has left (a row of db.views.run_summaries), or None when not running.

    Its own measurements first: its current training speed and its own last kNN pass; the
    estimate's figures for what it has not done yet (the linear probe, a first kNN pass).
    """
    if run["status"] != RUNNING:
        return None
    try:
        cfg = RunConfig.from_dict(run["config"])
    except (TypeError, ValueError):
        return None
    n = images_per_epoch(cfg)
    if n is None:
        return None
    p = parts(cfg, history, _kind_of(run.get("device")))
    phase = run.get("phase")
    elapsed = run.get("duration_s") or 0.0
    if phase in (None, STARTING) or not run.get("total_steps"):
        return max(0.0, p.total(cfg, n) - elapsed)
    ips = run.get("latest_images_per_sec") or p.images_per_s
    steps_left = max(0, run["total_steps"] - (run.get("step") or 0))
    epochs_done = int(run.get("epoch") or 0)  # counted once an epoch's kNN pass and flush are done
    knn_pass = run.get("latest_knn_s") or p.knn_pass_s
    passes = knn_passes(cfg, epochs_done)
    if phase == KNN and passes:
        passes -= 0.5  # the pass under way is, on average, half done
    left = steps_left * cfg.batch_size / ips + passes * knn_pass + (cfg.epochs - epochs_done) * p.checkpoint_s
    return left + (p.linear_s / 2 if phase == PROBE else p.linear_s)
