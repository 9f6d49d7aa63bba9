"""The one definition of a run's configuration.

`RunConfig` is a frozen dataclass: the CLI builds its flags from its fields, the dashboard builds
its form from them, the database stores `to_dict()` as JSON, and every value is validated here,
in `RunConfig.__post_init__`, and nowhere else: every limit the engine enforces is a limit of a
field here (the engine reads it from here), so no run is accepted and then refused at start.
Validation looks at values only, never at the disk: whether the data is there is
`db.datasets.check_data`, called explicitly by the form, the CLI and the run's process. It lives in
`db/` (not `engine/`) because the dashboard must be able to validate a form without importing torch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DATASETS = ("cifar10-mini", "cifar10", "stl10", "imagefolder", "synthetic")
ENCODERS = ("resnet18", "resnet50")
STEMS = ("cifar", "imagenet")
OPTIMIZERS = ("lars", "adam", "sgd")
SCHEDULES = ("warmup_cosine", "cosine_per_epoch", "constant")
LARS_EXCLUDES = ("bn_bias", "none")
LARS_ZERO_NORM = ("skip", "freeze")
YES_NO = ("no", "yes")
PROBES = ("lbfgs", "seed")
PRETRAIN_SPLITS = ("train", "unlabeled", "train+unlabeled")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "on", "off")
AUGMENT_BACKENDS = ("batched", "reference")
SYNC_BATCHNORM = ("auto", "on", "off")

# Images per split, for validating subset and batch sizes before anything is loaded.
# (default pretraining split, labelled train split, test split)
KNOWN_SIZES: dict[str, tuple[int, int, int]] = {
    "cifar10-mini": (5000, 5000, 1000),
    "cifar10": (50000, 50000, 10000),
    "stl10": (100000, 5000, 8000),  # pretrains on the unlabeled split, as the seed's code does
    "synthetic": (1000, 1000, 200),
}
# Images of each pretraining split a data set offers; its first is the default (see pretrain_split).
PRETRAIN_SPLIT_SIZES: dict[str, dict[str, int | None]] = {
    "stl10": {"unlabeled": 100000, "train+unlabeled": 105000, "train": 5000},
}
NATIVE_IMAGE_SIZE = {"cifar10-mini": 32, "cifar10": 32, "stl10": 96, "synthetic": 32, "imagefolder": 32}
MAX_PATH_CHARS = 1024  # a longer data_dir is a mistake (and the OS refuses names past ~4096 anyway)
MAX_GPUS = 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


# Colour jitter's hue range is [-0.2 s, 0.2 s] and must stay within ColorJitter's [-0.5, 0.5].
JITTER_STRENGTH_MAX = 2.5


class ConfigError(ValueError):
    """A configuration value is invalid: `field` names it, `message` says what is allowed (str(e) is both)."""

    def __init__(self, field_name: str, message: str):
        self.field, self.message = field_name, message
        super().__init__(f"{field_name}: {message}")


def _opt(help: str, **kw: Any) -> dict[str, Any]:
    return {"help": help, **kw}


@dataclass(frozen=True)
class RunConfig:
    # --- data
    dataset: str = field(default="cifar10-mini", metadata=_opt(
        "which data set to pretrain on", choices=DATASETS))
    data_dir: str | None = field(default=None, metadata=_opt(
        "folder of the data set (cifar10, stl10: torchvision's layout; imagefolder: "
        "train/<class>/ and test/<class>/); default data/<dataset> under the project"))
    subset_size: int | None = field(default=None, metadata=_opt(
        "train on a stratified, seeded subset of this many images (default: all)", min=1))
    image_size: int | None = field(default=None, metadata=_opt(
        "side of the square images the encoder sees, in pixels (default: the data set's own size: "
        "32 for CIFAR-10 and the synthetic set, 96 for STL-10, 32 for an image folder)", min=8, max=512))
    pretrain_split: str | None = field(default=None, metadata=_opt(
        "which images SimCLR trains on (default: the data set's own choice: unlabeled for STL-10, as the "
        "seed's code does; train for the others, the only split they have)", choices=PRETRAIN_SPLITS))
    # --- model
    encoder: str = field(default="resnet18", metadata=_opt("torchvision ResNet", choices=ENCODERS))
    stem: str = field(default="cifar", metadata=_opt(
        "cifar: 3x3 conv, stride 1, no max-pool (for 32x32 images); imagenet: torchvision's own",
        choices=STEMS))
    projection_dim: int = field(default=64, metadata=_opt(
        "output size of the MLP projection head", min=1, max=8192))
    projection_hidden_dim: int | None = field(default=None, metadata=_opt(
        "hidden size of the MLP projection head (default: the encoder's feature size, as in the SimCLR "
        "paper and the seed's code; solo-learn's CIFAR recipe uses 2048)", min=1, max=16384))
    # --- optimisation
    batch_size: int = field(default=256, metadata=_opt(
        "images per step (each gives two views)", min=2, max=65536))
    epochs: int = field(default=100, metadata=_opt("passes over the training images", min=1, max=100000))
    optimizer: str = field(default="lars", metadata=_opt(
        "lars: layer-wise adaptive (large batches); adam; sgd with momentum", choices=OPTIMIZERS))
    lr: float | None = field(default=None, metadata=_opt(
        "peak learning rate (default: base_lr x batch/256 when base_lr is given, else the optimizer's rule)",
        min_exclusive=0.0, max=100.0))
    base_lr: float | None = field(default=None, metadata=_opt(
        "learning rate per 256 images: lr = base_lr x batch_size/256 (linear scaling; solo-learn's CIFAR "
        "recipe: 0.4). Give lr or base_lr, not both", min_exclusive=0.0, max=100.0))
    schedule: str = field(default="warmup_cosine", metadata=_opt(
        "learning-rate schedule. warmup_cosine: linear warm-up, then cosine decay to 0, updated every step; "
        "cosine_per_epoch: cosine decay to 0 updated once per epoch, no warm-up (the seed's code with LARS); "
        "constant: the peak rate throughout (the seed's code with Adam)", choices=SCHEDULES))
    weight_decay: float = field(default=1e-6, metadata=_opt("L2 weight decay", min=0.0, max=1.0))
    lars_trust_coefficient: float = field(default=0.001, metadata=_opt(
        "LARS trust coefficient eta: a tensor's step is scaled by eta x |w| / |g| (SimCLR and the seed's "
        "code: 0.001; solo-learn's CIFAR recipe: 0.02)", min_exclusive=0.0, max=1.0))
    lars_exclude: str = field(default="bn_bias", metadata=_opt(
        "parameters LARS gives neither weight decay nor the trust ratio. bn_bias: BatchNorm weights and "
        "biases (SimCLR, solo-learn); none: every parameter gets both (the seed's code: its exclude lists "
        "are never used)", choices=LARS_EXCLUDES))
    lars_clip_lr: str = field(default="no", metadata=_opt(
        "yes: a tensor's LARS step is at most lr times its gradient, i.e. the trust ratio is clipped at "
        "lr (solo-learn's clip_lr)", choices=YES_NO))
    lars_zero_norm: str = field(default="skip", metadata=_opt(
        "a tensor whose weight or gradient norm is 0. skip: step without the trust ratio (TF SimCLR, "
        "solo-learn); freeze: the ratio is computed anyway and is 0 for a zero weight, so zero-initialized "
        "tensors such as BatchNorm biases never move (the seed's code, which tests norm >= 0)",
        choices=LARS_ZERO_NORM))
    temperature: float = field(default=0.5, metadata=_opt(
        "NT-Xent temperature", min_exclusive=0.0, max=10.0))
    warmup_epochs: float | None = field(default=None, metadata=_opt(
        "linear warm-up before cosine decay, in epochs (default: a tenth of the epochs)", min=0.0))
    # --- augmentation
    jitter_strength: float = field(default=1.0, metadata=_opt(
        "colour jitter strength s (1.0 reference, 0.5 the paper's CIFAR setting)", min=0.0, max=JITTER_STRENGTH_MAX))
    augment_backend: str = field(default="batched", metadata=_opt(
        "batched: per-image random parameters, whole batches on the training device; "
        "reference: torchvision's per-image transforms (slow, for parity)", choices=AUGMENT_BACKENDS))
    # --- run
    seed: int = field(default=0, metadata=_opt("random seed (subset, initialisation, augmentation)",
                                               min=0, max=2**31 - 1))
    device: str = field(default="auto", metadata=_opt("auto (CUDA when present, else CPU), cpu, cuda, cuda:N"))
    devices: int = field(default=1, metadata=_opt(
        "processes per run, one per GPU (data-parallel, launched with torchrun; on the CPU: gloo "
        "processes); batch_size stays the global batch and is split evenly over them", min=1, max=64))
    sync_batchnorm: str = field(default="auto", metadata=_opt(
        "BatchNorm statistics over the global batch when devices > 1 (auto: on with GPUs; torch's "
        "SyncBatchNorm needs GPUs, so CPU processes normalise per process)", choices=SYNC_BATCHNORM))
    precision: str = field(default="auto", metadata=_opt(
        "auto: bf16 autocast on CUDA, fp32 on CPU", choices=PRECISIONS))
    compile: str = field(default="auto", metadata=_opt(
        "torch.compile the model: auto (on with CUDA; off on the CPU, where compiling takes minutes and "
        "gains little), on, off. The first step then includes the compilation: the log shows its time "
        "and images/s leaves it out", choices=COMPILE_MODES))
    eval_every: int = field(default=5, metadata=_opt(
        "run the kNN monitor every this many epochs (and always at the end)", min=1, max=100000))
    knn_k: int = field(default=200, metadata=_opt("neighbours in the kNN monitor", min=1, max=10000))
    knn_temperature: float = field(default=0.1, metadata=_opt(
        "temperature of the weighted kNN vote", min_exclusive=0.0, max=10.0))
    probe: str = field(default="lbfgs", metadata=_opt(
        "final linear probe. lbfgs: standardized features, L2 picked on a held-out tenth, full-batch "
        "L-BFGS (seconds); seed: the seed's linear_evaluation.py, logistic regression on raw features, "
        "Adam lr 3e-4, batch 256, probe_epochs epochs, loss and accuracy averaged over test batches",
        choices=PROBES))
    probe_epochs: int = field(default=500, metadata=_opt(
        "epochs of the seed's probe (probe=seed; the seed's code: 500)", min=1, max=100000))

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ derived values
    @property
    def effective_lr(self) -> float:
        """The learning rate the run will use: `lr`, else base_lr x B/256, else the optimizer's rule."""
        if self.lr is not None:
            return self.lr
        if self.base_lr is not None:
            return self.base_lr * self.batch_size / 256
        return default_lr(self.optimizer, self.batch_size)

    @property
    def effective_warmup_epochs(self) -> float:
        """Warm-up of the warmup_cosine schedule; the other schedules have none."""
        if self.schedule != "warmup_cosine":
            return 0.0
        return self.epochs / 10 if self.warmup_epochs is None else self.warmup_epochs

    @property
    def resolved_data_dir(self) -> Path | None:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if self.dataset in ("cifar10", "stl10"):
            return PROJECT_ROOT / "data" / self.dataset
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        """Build from stored JSON or a form; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown configuration field (known: {', '.join(sorted(known))})")
        if values.get("dataset") == "stl10" and "pretrain_split" not in values:
            # Stored before pretrain_split existed, when STL-10 always pretrained on train+unlabeled:
            # a resumed run goes on with the images it started with.
            values = {**values, "pretrain_split": "train+unlabeled"}
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def default_lr(optimizer: str, batch_size: int) -> float:
    """LARS: 0.3 x B/256 (SimCLR's linear scaling); SGD: the same rule; Adam: 3e-4."""
    if optimizer == "adam":
        return 3e-4
    return 0.3 * batch_size / 256


def lr_rule(optimizer: str, batch_size: int) -> str:
    """Human-readable rule for the default learning rate, for help texts."""
    if optimizer == "adam":
        return "Adam: 3e-4"
    return f"{optimizer.upper()}: 0.3 x B/256 = 0.3 x {batch_size}/256 = {default_lr(optimizer, batch_size):.4g}"


def stored_value(config: dict[str, Any] | None, name: str) -> Any:
    """A field of a stored config; configs stored before the field existed get its default."""
    return (config or {}).get(name, RunConfig.__dataclass_fields__[name].default)


def config_fields() -> list[dataclasses.Field]:
    return list(fields(RunConfig))


def field_type(f: dataclasses.Field) -> type:
    """The base Python type of a field (int, float, str), ignoring `| None`."""
    text = str(f.type)
    for name, typ in (("int", int), ("float", float), ("str", str)):
        if text.startswith(name):
            return typ
    raise TypeError(f"unsupported field type {f.type!r}")


def field_optional(f: dataclasses.Field) -> bool:
    return "None" in str(f.type)


def coerce_field(name: str, value: Any) -> Any:
    """Turn a text value (CLI, grid, form) into the field's type; errors name the field."""
    by_name = {f.name: f for f in fields(RunConfig)}
    if name not in by_name:
        raise ConfigError(name, f"unknown configuration field (known: {', '.join(sorted(by_name))})")
    f = by_name[name]
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if field_optional(f) and text.lower() in ("", "none", "null", "all", "auto") and field_type(f) is not str:
            return None
        if field_optional(f) and text.lower() in ("", "none", "null") and field_type(f) is str:
            return None
        typ = field_type(f)
        try:
            if typ is int:
                as_float = float(text)
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            if typ is float:
                return float(text)
        except ValueError:
            raise ConfigError(name, f"expected {'an integer' if typ is int else 'a number'}, got {value!r}") from None
        return text
    return value


def config_from_text(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from text values (CLI flags, grid entries, form fields), each coerced to its type."""
    return RunConfig(**{k: coerce_field(k, v) for k, v in values.items()})


# ---------------------------------------------------------------------- validation
def _check_type(cfg: RunConfig, f: dataclasses.Field) -> None:
    value = getattr(cfg, f.name)
    if value is None:
        if not field_optional(f):
            raise ConfigError(f.name, "a value is required")
        return
    typ = field_type(f)
    ok = (typ is int and isinstance(value, int) and not isinstance(value, bool)) or \
         (typ is float and isinstance(value, (int, float)) and not isinstance(value, bool)) or \
         (typ is str and isinstance(value, str))
    if not ok:
        raise ConfigError(f.name, f"expected {typ.__name__}, got {type(value).__name__} {value!r}")
    if typ is float and value != value:  # NaN
        raise ConfigError(f.name, "must be a number, got NaN")


def _check_range(f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    if "choices" in m and value not in m["choices"]:
        raise ConfigError(f.name, f"must be one of {', '.join(m['choices'])}; got {value!r}")
    lo, hi, lo_ex = m.get("min"), m.get("max"), m.get("min_exclusive")
    allowed = _range_text(lo, hi, lo_ex)
    if lo is not None and value < lo or lo_ex is not None and value <= lo_ex or hi is not None and value > hi:
        raise ConfigError(f.name, f"must be {allowed}; got {value!r}")


def _range_text(lo: Any, hi: Any, lo_ex: Any) -> str:
    low = f"> {lo_ex}" if lo_ex is not None else (f">= {lo}" if lo is not None else "")
    high = f"<= {hi}" if hi is not None else ""
    return " and ".join(p for p in (low, high) if p) or "any value"


def _validate(cfg: RunConfig) -> None:
    for f in fields(cfg):
        _check_type(cfg, f)
        value = getattr(cfg, f.name)
        if value is not None:
            _check_range(f, value)
    # Ints given for float fields are stored as floats so that JSON round-trips are exact.
    for name in ("lr", "base_lr", "weight_decay", "temperature", "warmup_epochs", "jitter_strength",
                 "knn_temperature", "lars_trust_coefficient"):
        value = getattr(cfg, name)
        if isinstance(value, int):
            object.__setattr__(cfg, name, float(value))

    _resolve_dataset_defaults(cfg)
    if cfg.lr is not None and cfg.base_lr is not None:
        raise ConfigError("base_lr", f"give lr or base_lr, not both (lr {cfg.lr:g}, base_lr {cfg.base_lr:g})")
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isascii()
                                                       and dev[5:].isdecimal() and int(dev[5:]) < MAX_GPUS)):
        raise ConfigError("device", f"must be auto, cpu, cuda, cuda:N or mps (N < {MAX_GPUS}); got {dev[:40]!r}")
    if cfg.data_dir is not None and (len(cfg.data_dir) > MAX_PATH_CHARS or "\x00" in cfg.data_dir):
        raise ConfigError("data_dir", f"must be a path of at most {MAX_PATH_CHARS} characters without NUL bytes; "
                                      f"got {len(cfg.data_dir)} characters")
    if cfg.devices > 1:
        _validate_data_parallel(cfg)
    if cfg.warmup_epochs is not None and cfg.warmup_epochs > cfg.epochs:
        raise ConfigError("warmup_epochs", f"must be <= epochs ({cfg.epochs}); got {cfg.warmup_epochs}")
    if cfg.dataset == "imagefolder" and not cfg.data_dir:
        raise ConfigError("data_dir", "imagefolder needs data_dir: a folder with train/<class>/ and test/<class>/")

    # Sizes known without looking at the disk; an image folder's are checked by db.datasets.check_data.
    total = known_pretrain_size(cfg.dataset, cfg.pretrain_split)
    if cfg.subset_size is not None:
        if total is not None and cfg.subset_size > total:
            raise ConfigError("subset_size", f"must be <= {total}, the images in {cfg.dataset}; got {cfg.subset_size}")
        if cfg.subset_size < cfg.batch_size:
            raise ConfigError("subset_size", f"must be at least one batch ({cfg.batch_size} images); "
                                             f"got {cfg.subset_size}")
    elif total is not None and total < cfg.batch_size:
        raise ConfigError("batch_size", f"must be <= {total}, the images in {cfg.dataset}; got {cfg.batch_size}")


def _validate_data_parallel(cfg: RunConfig) -> None:
    if cfg.batch_size % cfg.devices:
        raise ConfigError("batch_size", f"must be a multiple of devices ({cfg.devices}): it is the global batch, "
                                        f"split evenly over the processes; got {cfg.batch_size}")
    if cfg.device not in ("auto", "cuda", "cpu"):
        raise ConfigError("device", f"must be auto, cuda or cpu when devices > 1 (each process takes its own "
                                    f"GPU; the executor picks which); got {cfg.device!r}")
    if cfg.device == "cpu" and cfg.sync_batchnorm == "on":
        raise ConfigError("sync_batchnorm", "on needs GPUs (torch's SyncBatchNorm has no CPU version); "
                                            "use auto or off with device=cpu")


def _resolve_dataset_defaults(cfg: RunConfig) -> None:
    """Fill image_size and pretrain_split from the data set when left empty, so a stored config says
    what the run really did (and STL-10 trains at its own 96 px on its unlabeled split)."""
    if cfg.image_size is None:
        object.__setattr__(cfg, "image_size", NATIVE_IMAGE_SIZE[cfg.dataset])
    splits = list(PRETRAIN_SPLIT_SIZES.get(cfg.dataset, {"train": None}))
    if cfg.pretrain_split is None:
        object.__setattr__(cfg, "pretrain_split", splits[0])
    elif cfg.pretrain_split not in splits:
        raise ConfigError("pretrain_split", f"{cfg.dataset} offers {', '.join(splits)}; got {cfg.pretrain_split!r}")


def known_pretrain_size(dataset: str, split: str | None = None) -> int | None:
    """Images available for pretraining when known without looking at the disk, else None (an image
    folder: db.datasets counts it)."""
    if split is not None and split in PRETRAIN_SPLIT_SIZES.get(dataset, {}):
        return PRETRAIN_SPLIT_SIZES[dataset][split]
    if dataset in KNOWN_SIZES:
        return KNOWN_SIZES[dataset][0]
    return None


def runs_root() -> Path:
    """Where run folders (checkpoint, log) live: SIMCLR_RUNS_DIR, else runs/ under the project."""
    return Path(os.environ.get("SIMCLR_RUNS_DIR") or PROJECT_ROOT / "runs")


def under_runs_root(path: str | Path | None) -> Path | None:
    """`path` resolved (symlinks and `..` too) when it lies inside the runs folder, else None.

    The one gate for every file the dashboard reads, serves or deletes on the strength of a path
    stored in the database: any worker host on a shared database can write such a row, so a path
    that points elsewhere (/etc/shadow, a home folder) must never be read or removed.
    """
    if not path:
        return None
    try:
        root = runs_root().resolve()
        resolved = Path(path).resolve()
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, a symlink loop
        return None
    return resolved if resolved != root and resolved.is_relative_to(root) else None


def run_dir(run_id: int, database_id: str) -> Path:
    """runs/<database id>/<run id>: run ids restart at 1 in every database, so the folder is
    named by both, and a new database pointed at an old runs folder never finds another's files."""
    return runs_root() / database_id / str(run_id)


# What a run leaves in its folder (the engine writes them, the dashboard reads them without torch).
CHECKPOINT_FILE = "checkpoint.pt"  # everything needed to resume, rewritten every epoch
CHECKPOINT_INFO_FILE = "checkpoint.json"  # {epoch, step, saved_at} of that checkpoint
ENCODER_FILE = "encoder.pt"  # the trained encoder alone, a torchvision ResNet state dict (at completion)
ENCODER_INFO_FILE = "encoder.json"  # how to load it: encoder, stem, feature_dim, normalization, epoch, step
INSIGHTS_FILE = "insights.npz"  # nearest neighbours and the 2-D feature map (at completion)
