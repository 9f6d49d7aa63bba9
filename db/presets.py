"""Named presets: sets of RunConfig values (and grids) the Launch page and `--preset NAME` apply.

A preset sets only the fields it names, as text (what a form box or a flag would hold; "" means
the field's default), so presets compose: e.g. "baseline-epochs" (which runs) then "seed-code"
(how they train and are probed). A preset's `grid` makes a sweep. Flags given on the command line
win over presets; a --grid for a field replaces the preset's grid for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from db.baseline import baseline_table


@dataclass(frozen=True)
class Preset:
    name: str  # for --preset
    label: str  # the Launch page's button
    why: str  # one or two sentences: what it is for and where it comes from
    values: dict[str, str]
    grid: dict[str, list[str]] = field(default_factory=dict)


def _baseline_grid(data_field: str) -> dict[str, list[str]]:
    table = baseline_table()
    return {data_field: [str(d) for d in table.data_counts], "batch_size": [str(b) for b in table.batch_sizes]}


_TWO_READINGS = ("The baseline table's column \"data count\" (데이터 갯수) can be read two ways, so there are "
                 "two presets: ")

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "baseline-subset", "Baseline: data count = subset size",
        _TWO_READINGS + "this one trains on a subset of that many images (its literal title; a few hundred "
                        "images cannot reach the table's 71-84 %).",
        {"encoder": "resnet18", "optimizer": "lars"}, _baseline_grid("subset_size")),
    Preset(
        "baseline-epochs", "Baseline: data count = epochs",
        _TWO_READINGS + "this one trains on all of CIFAR-10 for that many epochs (the post says it varied "
                        "epochs, and 71-84 % is what full CIFAR-10 runs of 300-1500 epochs reach). A GPU job.",
        {"encoder": "resnet18", "optimizer": "lars", "dataset": "cifar10", "subset_size": ""},
        _baseline_grid("epochs")),
    Preset(
        "seed-code", "The seed's code (LARS)",
        "How Spijkervet/SimCLR trains and probes with LARS: torchvision's ResNet (ImageNet stem) at its "
        "config's 224 px, LARS 0.3 x B/256 with the trust ratio and weight decay on every parameter, "
        "per-epoch cosine without warm-up, temperature 0.5, projection 64, and its 500-epoch Adam probe.",
        {"optimizer": "lars", "stem": "imagenet", "image_size": "224", "lr": "", "base_lr": "",
         "weight_decay": "1e-06", "schedule": "cosine_per_epoch", "warmup_epochs": "",
         "lars_trust_coefficient": "0.001", "lars_exclude": "none", "lars_clip_lr": "no", "lars_zero_norm": "freeze",
         "temperature": "0.5", "projection_dim": "64", "projection_hidden_dim": "", "jitter_strength": "1",
         "probe": "seed", "probe_epochs": "500"}),
    Preset(
        "seed-code-adam", "The seed's code (Adam)",
        "Spijkervet/SimCLR's default optimizer: Adam at a constant 3e-4 without weight decay; otherwise as "
        "\"The seed's code (LARS)\".",
        {"optimizer": "adam", "stem": "imagenet", "image_size": "224", "lr": "0.0003", "base_lr": "",
         "weight_decay": "0", "schedule": "constant", "warmup_epochs": "", "temperature": "0.5",
         "projection_dim": "64", "projection_hidden_dim": "", "jitter_strength": "1",
         "probe": "seed", "probe_epochs": "500"}),
    Preset(
        "solo-cifar", "solo-learn CIFAR recipe",
        "solo-learn's CIFAR SimCLR (scripts/pretrain/cifar/simclr.yaml), a recipe known to learn well: "
        "CIFAR stem, LARS 0.4 x B/256 with eta 0.02 and lr clipping, weight decay 1e-4, BatchNorm and biases "
        "excluded, 10 warm-up epochs then cosine, temperature 0.2, projection 2048 -> 256, 1000 epochs.",
        {"dataset": "cifar10", "encoder": "resnet18", "stem": "cifar", "image_size": "", "optimizer": "lars",
         "batch_size": "256", "epochs": "1000", "lr": "", "base_lr": "0.4", "weight_decay": "0.0001",
         "schedule": "warmup_cosine", "warmup_epochs": "10", "lars_trust_coefficient": "0.02",
         "lars_exclude": "bn_bias", "lars_clip_lr": "yes", "lars_zero_norm": "skip", "temperature": "0.2",
         "projection_dim": "256", "projection_hidden_dim": "2048", "jitter_strength": "1"}),
    Preset(
        "quick-cpu", "Quick CPU run (minutes)",
        "A short run for a machine without a GPU (cifar10-mini, ImageNet stem at 32 px, Adam 1e-3, temperature "
        "0.2, batch 64, colour jitter 0.5, 40 epochs: about 7 minutes on 2 cores, kNN top-1 about 13 points above "
        "the untrained encoder). Chosen with "
        "bench/quick_preset_search.py; what was and was not measured is in BENCHMARKS.md.",
        {"dataset": "cifar10-mini", "subset_size": "", "encoder": "resnet18", "stem": "imagenet",
         "image_size": "32", "optimizer": "adam", "batch_size": "64", "epochs": "40", "lr": "0.001",
         "base_lr": "", "weight_decay": "1e-06", "schedule": "warmup_cosine", "warmup_epochs": "",
         "temperature": "0.2", "projection_dim": "64", "projection_hidden_dim": "", "jitter_strength": "0.5",
         "eval_every": "5", "device": "auto", "probe": "lbfgs"}),
)}
QUICK_CPU = "quick-cpu"  # the Launch form's default on a machine without a GPU


class UnknownPreset(KeyError):
    def __str__(self) -> str:
        return f"unknown preset {self.args[0]!r} (known: {', '.join(PRESETS)})"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPreset(name) from None


def combine(names: Sequence[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The values and grid of several presets applied in order (a later one wins on a field)."""
    values: dict[str, str] = {}
    grid: dict[str, list[str]] = {}
    for name in names:
        preset = get_preset(name)
        for key, text in preset.values.items():
            values[key] = text
            grid.pop(key, None)
        for key, texts in preset.grid.items():
            grid[key] = list(texts)
            values.pop(key, None)
    return values, grid
