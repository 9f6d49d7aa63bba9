"""Data sets: decoded once into uint8 tensors, cached on disk, held in memory.

Per-image PIL decoding and augmentation in loader workers is what starves a GPU at 32x32 (see
docs/design.md), so every data set is decoded exactly once into uint8 tensors [N, 3, S, S] at the run's
`image_size`, saved to a cache file per data set, source and size, and kept in a dict for the rest
of the process. The trainer augments whole batches of these tensors on its device.

Data sets (`RunConfig.dataset`):
  cifar10-mini  500 train + 100 test CIFAR-10 images per class, shipped as JPEG bytes in
                engine/assets/cifar10-mini.npz (built by scripts/build_cifar10_mini.py).
  cifar10       torchvision's CIFAR-10 layout in data_dir, downloaded by torchvision when missing.
  stl10         torchvision's STL-10 in data_dir; pretraining on its unlabeled split (100,000 images)
                as the seed's code does, or on train+unlabeled (105,000, as the STL-10 paper) or
                train (`pretrain_split`); kNN/linear evaluation on train/test.
  imagefolder   data_dir/train/<class>/ and data_dir/test/<class>/ of image files.
  synthetic     generated patterns, 10 classes, for tests.

`subset_size` picks a stratified subset (equal per class, +-1) seeded by `seed`. When some
pretraining images are unlabeled (STL-10), classes cannot be balanced: the subset is then a
seeded uniform random draw from the whole pretraining pool.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from db.config import IMAGE_SUFFIXES, KNOWN_SIZES, PROJECT_ROOT, RunConfig
from db.datasets import where_to_put

MINI_ASSET = Path(__file__).resolve().parents[1] / "assets" / "cifar10-mini.npz"
# Bounds on one image file, checked before it is read or decoded: a 1.2 MB PNG can decode to
# 1.2 GB, and a sparse file can claim gigabytes it never stored.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # e.g. 8000 x 5000; far beyond what any run here trains on
# The smallest std a channel is normalised by (one grey level): a channel constant over the whole
# data set has std 0, and dividing by it would make every loss NaN (blamed on the learning rate).
MIN_CHANNEL_STD = 1.0 / 255.0
CACHE_FORMAT = 1  # bump when the cached dict's layout changes: old files then simply miss

# A data set before the subset is applied, as cached on disk:
#   pretrain_images, pretrain_labels (-1 = unlabeled), pretrain_stats (float64 [2, 3]: mean, std),
#   train_images, train_labels, test_images, test_labels, classes, format
Splits = dict[str, Any]

_MEMORY: dict[str, Splits] = {}


class DataError(RuntimeError):
    """A data set cannot be loaded; the message names the file or folder and what to do."""


@dataclass
class ImageData:
    """What the trainer gets. Tensors may be shared with the in-memory cache: treat them as read-only."""

    pretrain_images: torch.Tensor   # uint8 [N,3,H,W], the images SimCLR trains on (subset applied)
    pretrain_indices: torch.Tensor  # int64 [N], indices into the pretraining split chosen (pretrain_split)
    train_images: torch.Tensor      # uint8, labelled train images (kNN memory bank, linear eval)
    train_labels: torch.Tensor      # int64
    test_images: torch.Tensor       # uint8
    test_labels: torch.Tensor       # int64
    classes: list[str]
    mean: tuple[float, float, float]  # per channel, of pretrain_images in [0, 1]
    std: tuple[float, float, float]


# ============================================================================ public entry points
def load_dataset(cfg: RunConfig, *, remember: bool = True) -> ImageData:
    """Load (decoding or reading the cache when needed) and apply the seeded subset.

    remember=False does not keep the data set in this process's memory afterwards (the dashboard's
    augmentation preview: a web server must not hold every data set x size it was asked about)."""
    splits = _load_splits(cfg, remember=remember)
    labels: torch.Tensor = splits["pretrain_labels"]
    images: torch.Tensor = splits["pretrain_images"]
    pool = _split_pool(cfg, labels)  # indices into the cached pool of the pretraining split chosen
    if pool is not None:
        labels, images = labels[pool], images[pool]
    total = len(labels)
    if cfg.subset_size is None:
        indices = torch.arange(total, dtype=torch.int64)
        if pool is None:
            stats = splits["pretrain_stats"]  # computed once, with the decode
            mean, std = tuple(stats[0].tolist()), tuple(stats[1].tolist())
        else:
            mean, std = channel_stats(images)
    else:
        if cfg.subset_size > total:
            raise DataError(f"subset_size {cfg.subset_size} is larger than the {total} pretraining images "
                            f"of {cfg.dataset}")
        # Unlabeled images cannot be stratified: treat the whole pool as one group (a random draw).
        groups = labels if bool((labels >= 0).all()) else torch.zeros_like(labels)
        indices = stratified_subset(groups, cfg.subset_size, cfg.seed)
        images = images[indices]
        mean, std = channel_stats(images)
    return ImageData(
        pretrain_images=images,
        pretrain_indices=indices,
        train_images=splits["train_images"],
        train_labels=splits["train_labels"],
        test_images=splits["test_images"],
        test_labels=splits["test_labels"],
        classes=list(splits["classes"]),
        mean=mean,
        std=std,
    )


def _split_pool(cfg: RunConfig, labels: torch.Tensor) -> torch.Tensor | None:
    """Which images of the cached pretraining pool the config's pretrain_split takes (None: all).

    Only STL-10 has a choice: its cached pool is train (labelled) + unlabeled."""
    if cfg.dataset != "stl10" or cfg.pretrain_split == "train+unlabeled":
        return None
    wanted = labels < 0 if cfg.pretrain_split == "unlabeled" else labels >= 0
    return torch.nonzero(wanted).reshape(-1)


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Sorted int64 indices of `size` items, as equal per class as the class sizes allow.

    Every class gets `size // classes` or one more; a class with fewer items gives all it has and
    the rest is spread over the others (water-filling), so counts differ by at most one among
    classes that are not exhausted. Which classes get the extra one, and which items, is drawn
    from a generator seeded with `seed`: the same call always returns the same subset.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    total = len(labels)
    if not 1 <= size <= total:
        raise ValueError(f"subset size must be between 1 and {total}, the number of items; got {size}")
    if size == total:
        return torch.arange(total, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    counts_list = counts.tolist()
    # The largest level L with sum(min(count, L)) <= size; then `extra` classes that still have
    # items left get L + 1.
    level = size // len(classes)
    while sum(min(c, level + 1) for c in counts_list) <= size:
        level += 1
    quota = [min(c, level) for c in counts_list]
    extra = size - sum(quota)
    open_classes = [i for i, c in enumerate(counts_list) if c > level]
    for i in torch.randperm(len(open_classes), generator=gen)[:extra].tolist():
        quota[open_classes[i]] += 1
    chosen = []
    for cls, k in zip(classes.tolist(), quota):
        members = torch.nonzero(labels == cls).reshape(-1)
        chosen.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.sort(torch.cat(chosen)).values.to(torch.int64)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of uint8 images [N, 3, H, W], in [0, 1].

    From a 256-bin histogram per channel: exact, and ~10x faster than float sums over 50,000
    CIFAR images because it never makes a float copy.
    """
    levels = torch.arange(256, dtype=torch.float64)
    mean, std = [], []
    for c in range(3):
        hist = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = max(1.0, float(hist.sum()))
        m = float((hist * levels).sum()) / n
        var = max(0.0, float((hist * levels**2).sum()) / n - m * m)
        mean.append(m / 255.0)
        std.append(max(MIN_CHANNEL_STD, math.sqrt(var) / 255.0))
    return (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])


def cache_dir() -> Path:
    return Path(os.environ.get("SIMCLR_CACHE") or PROJECT_ROOT / "runs" / "cache")


def cache_file(cfg: RunConfig) -> Path | None:
    """Where this configuration's decoded data is cached on disk (None: not cached on disk)."""
    key = _source(cfg)[0]()
    return None if key is None else _cache_path(cfg, key)


def clear_memory_cache() -> None:
    """Forget the data sets held in this process (the disk cache stays)."""
    _MEMORY.clear()


# ============================================================================ caching
def _load_splits(cfg: RunConfig, *, remember: bool = True) -> Splits:
    key_of, build = _source(cfg)
    key = key_of()
    memory_key = f"{cfg.dataset}|{cfg.image_size}|{key}"
    if memory_key in _MEMORY:
        return _MEMORY[memory_key]
    if key is None:  # generated data: cheaper to make than to read back
        splits = _finish(build())
    else:
        splits = _read_cache(_cache_path(cfg, key))
        if splits is None:
            splits = _finish(build())
            # The key again: a download has just created the files the key describes.
            key = key_of()
            memory_key = f"{cfg.dataset}|{cfg.image_size}|{key}"
            _write_cache(_cache_path(cfg, key), splits)
    if remember:
        _MEMORY[memory_key] = splits
    return splits


def _finish(splits: Splits) -> Splits:
    """Add what every data set carries besides its images: the format tag, the full split's stats."""
    mean, std = channel_stats(splits["pretrain_images"])
    splits["pretrain_stats"] = torch.tensor([mean, std], dtype=torch.float64)
    splits["format"] = CACHE_FORMAT
    return splits


def _cache_path(cfg: RunConfig, key: str) -> Path:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{cfg.dataset}|{cfg.image_size}|{key}".encode()).hexdigest()[:16]
    return cache_dir() / f"{cfg.dataset}-{cfg.image_size}px-{digest}.pt"


_SPLIT_KEYS = ("pretrain_images", "pretrain_labels", "pretrain_stats", "train_images", "train_labels",
               "test_images", "test_labels")


def _read_cache(path: Path) -> Splits | None:
    """The cached splits, or None when absent; an unreadable or malformed file is rebuilt, not fatal."""
    if not path.exists():
        return None
    try:
        splits = torch.load(path, map_location="cpu", weights_only=True)
        ok = (isinstance(splits, dict) and splits.get("format") == CACHE_FORMAT
              and all(isinstance(splits.get(k), torch.Tensor) for k in _SPLIT_KEYS)
              and isinstance(splits.get("classes"), list))
        if not ok:
            raise ValueError("unexpected contents")
        return splits
    except Exception as exc:  # corrupt zip, truncated file, old format: all mean "decode again"
        warnings.warn(f"data cache {path} is unreadable ({exc}); rebuilding it", stacklevel=3)
        return None


def _write_cache(path: Path, splits: Splits) -> None:
    """Write atomically (temp file, then rename) so a killed process never leaves a half-written cache."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache shared by a lab's users should not be
        with os.fdopen(fd, "wb") as f:
            torch.save(splits, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:  # a read-only or full disk costs a re-decode next time, nothing more
        warnings.warn(f"could not write the data cache {path} ({exc}); continuing without it", stacklevel=3)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


# ============================================================================ sources
# Each source returns (key, build): key() describes the source's files and changes whenever they
# do (None: generated, not cached on disk); build() decodes the full splits at cfg.image_size.
def _source(cfg: RunConfig) -> tuple[Callable[[], str | None], Callable[[], Splits]]:
    size = cfg.image_size
    if cfg.dataset == "cifar10-mini":
        return lambda: _file_key([MINI_ASSET]), lambda: _build_mini(size)
    if cfg.dataset == "synthetic":
        return lambda: None, lambda: _build_synthetic(size)
    root = cfg.resolved_data_dir
    assert root is not None
    root = root.resolve()
    if cfg.dataset == "imagefolder":
        scan = _scan_imagefolder(root)
        return lambda: f"{root}|{scan.key}", lambda: _build_imagefolder(scan, size)
    if cfg.dataset in ("cifar10", "stl10"):
        from torchvision.datasets import CIFAR10, STL10

        folder = root / (CIFAR10 if cfg.dataset == "cifar10" else STL10).base_folder
        builder = _build_cifar10 if cfg.dataset == "cifar10" else _build_stl10
        return lambda: f"{root}|{_folder_key(folder)}", lambda: builder(root, size)
    raise DataError(f"unknown dataset {cfg.dataset!r}")


def _file_key(paths: Sequence[Path]) -> str:
    """Name, size and mtime of each file: changes when any is replaced ('absent' when missing)."""
    parts = []
    for p in paths:
        try:
            st = p.stat()
            parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}:absent")
    return "|".join(parts)


def _folder_key(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return _file_key(files) if files else f"{folder}:absent"


# ---------------------------------------------------------------------------- decoding
def _fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 image(s) [..., 3, H, W] so the shorter side is `size`, then centre-crop a square.

    Untouched when already size x size. Cropping rather than stretching keeps non-square images'
    proportions (as ImageNet-style Resize + CenterCrop does); antialiasing avoids aliasing when
    shrinking (e.g. STL-10's 96 px to 32 px).
    """
    h, w = image.shape[-2:]
    if h == size and w == size:
        return image
    from torchvision.transforms.v2 import functional as TF  # here: a 1 s import most loads never need

    if h != w:
        scale = size / min(h, w)
        image = TF.resize(image, [max(size, round(h * scale)), max(size, round(w * scale))], antialias=True)
        return TF.center_crop(image, [size, size])
    return TF.resize(image, [size, size], antialias=True)


def _fit_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """`_fit` over a uint8 batch, in chunks so a large set is never converted to float all at once."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    return torch.cat([_fit(chunk, size) for chunk in images.split(4096)])


def _decode_all(blobs: Sequence[torch.Tensor], names: Sequence[str], size: int) -> torch.Tensor:
    """Decode encoded images (1-D uint8 tensors) to RGB uint8 [N, 3, size, size].

    torchvision's decoders handle JPEG, PNG, GIF and WebP (~30 us for a 32x32 JPEG); PIL takes the
    rest (BMP, TIFF, PPM, ...) and every file they reject, so a truncated or garbage file is
    reported by PIL's error. Grey, palette and RGBA images become RGB (alpha is dropped); 16-bit
    images become 8-bit. A file neither can read is a DataError naming it.
    """
    from torchvision.io import ImageReadMode, decode_image

    out = torch.empty((len(blobs), 3, size, size), dtype=torch.uint8)
    for i, blob in enumerate(blobs):
        _check_pixels(blob, names[i])
        try:
            image = decode_image(blob, mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            image = _decode_with_pil(blob, names[i])
        if image.dim() == 4:  # animated GIF: keep the first frame
            image = image[0]
        if image.dtype == torch.uint16:  # 16-bit PNG: keep the high byte, as an 8-bit view would
            image = (image.to(torch.int32) >> 8).to(torch.uint8)
        out[i] = _fit(image, size)
    return out


def _check_pixels(blob: torch.Tensor, name: str) -> None:
    """Refuse an image whose header claims more than MAX_IMAGE_PIXELS, before decoding it.

    PIL's open() reads the header only; a file PIL cannot identify is left to the decoders below,
    which name it in their error if they cannot read it either."""
    from PIL import Image

    if len(blob) == 0:
        raise DataError(f"image file {name} is empty (0 bytes). Delete or replace it, then run again.")
    try:
        with Image.open(io.BytesIO(blob.numpy().tobytes())) as im:
            pixels = f"{im.width} x {im.height}" if im.width * im.height > MAX_IMAGE_PIXELS else None
    except Image.DecompressionBombError:  # PIL's own, far higher limit
        pixels = "too many"
    except Exception:  # noqa: BLE001 — not identifiable here; the decoders report it
        return
    if pixels:
        raise DataError(f"image file {name} is {pixels} pixels; at most {MAX_IMAGE_PIXELS:,} pixels per image "
                        "are decoded. Shrink or remove it, then run again.")


def _read_image_file(path: str) -> torch.Tensor:
    """The bytes of one image file, refusing a file larger than MAX_IMAGE_BYTES before reading it."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_IMAGE_BYTES:
                raise DataError(f"image file {path} is {size / 1e6:.0f} MB; at most {MAX_IMAGE_BYTES / 1e6:.0f} MB "
                                "per image file are read. Shrink or remove it, then run again.")
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read image file {path}: {exc}") from exc
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def _decode_with_pil(blob: torch.Tensor, name: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob.numpy().tobytes())) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image file {name}: {exc}. Delete or replace it, then run again.") from exc
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


# ---------------------------------------------------------------------------- cifar10-mini
def _build_mini(size: int) -> Splits:
    if not MINI_ASSET.exists():
        raise DataError(f"{MINI_ASSET} is missing: rebuild it with `python scripts/build_cifar10_mini.py "
                        f"<CIFAR-10 ImageFolder tree>` (default source ../shared/datasets/cifar10)")
    try:
        with np.load(MINI_ASSET, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        classes = [str(c) for c in arrays["classes"]]
        splits: Splits = {"classes": classes}
        for split in ("train", "test"):
            data = torch.from_numpy(arrays[f"{split}_jpeg"])
            offsets = arrays[f"{split}_offsets"].tolist()
            blobs = [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
            names = [f"{MINI_ASSET} ({split}/{name.decode()})" for name in arrays[f"{split}_files"]]
            splits[f"{split}_images"] = _decode_all(blobs, names, size)
            splits[f"{split}_labels"] = torch.from_numpy(arrays[f"{split}_labels"]).to(torch.int64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{MINI_ASSET} is unreadable ({exc}): rebuild it with scripts/build_cifar10_mini.py") from exc
    # CIFAR-10 pretrains on its own labelled train split: one tensor, stored and held once.
    splits["pretrain_images"] = splits["train_images"]
    splits["pretrain_labels"] = splits["train_labels"]
    return splits


# ---------------------------------------------------------------------------- imagefolder
@dataclass
class _FolderScan:
    classes: list[str]
    files: dict[str, list[tuple[str, int]]]  # split -> [(file path, label)]; str: 60,000 Paths cost seconds
    key: str  # file count, total bytes, newest mtime and class folders' mtimes, per split


def _scan_imagefolder(root: Path) -> _FolderScan:
    """List root/{train,test}/<class>/<image>, in ImageFolder's order (sorted classes, sorted files)."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (imagefolder needs {root}/train/<class>/ "
                        f"and {root}/test/<class>/)")
    classes: list[str] = []
    files: dict[str, list[tuple[str, int]]] = {}
    key_parts: list[str] = []
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir} does not exist: imagefolder needs {root}/train/<class>/ and "
                            f"{root}/test/<class>/ with the same class folders")
        # As db.datasets.count_imagefolder counts: every sub-folder is a class, files with an image
        # suffix are images; hidden files (macOS "._x.jpg" forks) are skipped here, not decoded.
        split_classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
        if not split_classes:
            raise DataError(f"{split_dir} holds no class folders (expected {split_dir}/<class>/<image>)")
        if split == "test" and split_classes != classes:
            missing, unknown = sorted(set(classes) - set(split_classes)), sorted(set(split_classes) - set(classes))
            raise DataError(f"{split_dir} must have the same class folders as {root / 'train'}"
                            + (f"; missing: {', '.join(missing)}" if missing else "")
                            + (f"; not in train: {', '.join(unknown)}" if unknown else ""))
        classes = split_classes
        items: list[tuple[str, int]] = []
        count = total_bytes = newest = 0
        for label, cls in enumerate(classes):
            class_dir = split_dir / cls
            entries = sorted((e for e in os.scandir(class_dir) if e.is_file() and not e.name.startswith(".")
                              and e.name.lower().endswith(IMAGE_SUFFIXES)), key=lambda e: e.name)
            if not entries:
                raise DataError(f"class folder {class_dir} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                                f"add images or remove the folder")
            for e in entries:
                st = e.stat()
                count, total_bytes, newest = count + 1, total_bytes + st.st_size, max(newest, st.st_mtime_ns)
                items.append((e.path, label))
            key_parts.append(f"{split}/{cls}:{class_dir.stat().st_mtime_ns}")
        files[split] = items
        key_parts.append(f"{split}:{count}:{total_bytes}:{newest}")
    return _FolderScan(classes, files, "|".join(key_parts))


def _build_imagefolder(scan: _FolderScan, size: int) -> Splits:
    splits: Splits = {"classes": scan.classes}
    for split, items in scan.files.items():
        blobs = [_read_image_file(path) for path, _ in items]
        splits[f"{split}_images"] = _decode_all(blobs, [p for p, _ in items], size)
        splits[f"{split}_labels"] = torch.tensor([label for _, label in items], dtype=torch.int64)
    splits["pretrain_images"] = splits["train_images"]
    splits["pretrain_labels"] = splits["train_labels"]
    return splits


# ---------------------------------------------------------------------------- torchvision sets
def _torchvision(cls: Any, root: Path, dataset: str, **kwargs: Any) -> Any:
    """cls(root, download=True, **kwargs); any failure becomes a DataError that says exactly which
    file to put where (db.datasets.where_to_put, the same advice `check_data` gives before a run)."""
    try:
        return cls(str(root), download=True, **kwargs)
    except (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError, pickle.UnpicklingError) as exc:
        raise DataError(
            f"{cls.__name__} is missing or incomplete in {root} and torchvision could not download it "
            f"({type(exc).__name__}: {exc}). {where_to_put(dataset, root)}"
        ) from exc


def _build_cifar10(root: Path, size: int) -> Splits:
    from torchvision.datasets import CIFAR10

    train = _torchvision(CIFAR10, root, "cifar10", train=True)
    test = _torchvision(CIFAR10, root, "cifar10", train=False)
    splits: Splits = {"classes": list(train.classes)}
    for split, ds in (("train", train), ("test", test)):
        hwc = torch.from_numpy(ds.data)  # uint8 [N, 32, 32, 3]
        splits[f"{split}_images"] = _fit_batch(hwc.permute(0, 3, 1, 2), size)
        splits[f"{split}_labels"] = torch.tensor(ds.targets, dtype=torch.int64)
    splits["pretrain_images"] = splits["train_images"]
    splits["pretrain_labels"] = splits["train_labels"]
    return splits


def _build_stl10(root: Path, size: int) -> Splits:
    from torchvision.datasets import STL10

    # "train+unlabeled" is exactly the pretraining pool, train first (labels 0..9) then unlabeled
    # (label -1); the labelled train split is its head, kept as a view so it is stored only once.
    pool = _torchvision(STL10, root, "stl10", split="train+unlabeled")
    test = _torchvision(STL10, root, "stl10", split="test")
    labels = torch.from_numpy(pool.labels.astype(np.int64))
    images = _fit_batch(torch.from_numpy(pool.data), size)
    del pool
    n_train = int((labels >= 0).sum())
    classes = list(getattr(test, "classes", [])) or [str(i) for i in range(int(labels.max()) + 1)]
    return {
        "classes": classes,
        "pretrain_images": images,
        "pretrain_labels": labels,
        "train_images": images[:n_train],
        "train_labels": labels[:n_train].clone(),
        "test_images": _fit_batch(torch.from_numpy(test.data), size),
        "test_labels": torch.from_numpy(test.labels.astype(np.int64)),
    }


# ---------------------------------------------------------------------------- synthetic
SYNTHETIC_CLASSES = [f"{pattern}-{freq}" for freq in ("coarse", "fine")
                     for pattern in ("hstripes", "vstripes", "checks", "rings", "blob")]
_SYNTHETIC_SEED = 20240601


def _build_synthetic(size: int) -> Splits:
    """Ten classes of coloured patterns plus noise, deterministic from a fixed seed.

    A class is (pattern, spatial frequency, colour pair): horizontal or vertical stripes,
    checks, rings or a blob, each coarse or fine. Pattern and frequency survive SimCLR's crops,
    flips, colour jitter and greyscale well enough that a briefly trained encoder's kNN beats
    chance; phase, centre, frequency (+-15%), brightness and pixel noise vary per image, so the
    task is not trivial. Sizes follow db.config.KNOWN_SIZES["synthetic"].
    """
    _, n_train, n_test = KNOWN_SIZES["synthetic"]
    gen = torch.Generator().manual_seed(_SYNTHETIC_SEED)
    n_classes = len(SYNTHETIC_CLASSES)
    # Colour pairs per class: hues spaced around the circle, the second colour darker and opposite.
    hue = torch.arange(n_classes, dtype=torch.float32) * (2 * math.pi / n_classes)
    offsets = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    light = 0.55 + 0.4 * torch.cos(hue[:, None] + offsets)          # [C, 3]
    dark = 0.45 - 0.35 * torch.cos(hue[:, None] + offsets + math.pi / 2)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % n_classes  # balanced and interleaved
        images = torch.empty((n, 3, size, size), dtype=torch.uint8)
        chunk = max(1, 2**22 // (3 * size * size))  # few, large vector ops; bounded memory at big sizes
        for start in range(0, n, chunk):
            lab = labels[start:start + chunk]
            m = len(lab)
            coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
            v, u = coords[:, None].expand(size, size), coords[None, :].expand(size, size)  # rows, cols
            pattern_id, fine = lab % 5, lab >= 5
            freq = torch.where(fine, 5.0, 2.0) * (1 + 0.15 * (2 * torch.rand(m, generator=gen) - 1))
            phase = 2 * math.pi * torch.rand(m, 2, generator=gen)
            centre = 0.3 + 0.4 * torch.rand(m, 2, generator=gen)
            f, p0, p1 = freq[:, None, None], phase[:, 0, None, None], phase[:, 1, None, None]
            cy, cx = centre[:, 0, None, None], centre[:, 1, None, None]
            r = ((u - cx) ** 2 + (v - cy) ** 2).sqrt()
            # Each pattern computed only for the images that show it (an index per pattern).
            patterns: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (
                lambda i: torch.sin(2 * math.pi * f[i] * v + p0[i]),                              # hstripes
                lambda i: torch.sin(2 * math.pi * f[i] * u + p0[i]),                              # vstripes
                lambda i: torch.sin(2 * math.pi * f[i] * u + p0[i]) * torch.sin(2 * math.pi * f[i] * v + p1[i]),
                lambda i: torch.sin(2 * math.pi * f[i] * r[i] + p0[i]),                           # rings
                lambda i: 2 * torch.exp(-4 * (f[i] * r[i]) ** 2) - 1,                             # blob
            )
            wave = torch.empty((m, size, size))
            for k, pattern in enumerate(patterns):
                idx = torch.nonzero(pattern_id == k).reshape(-1)
                wave[idx] = pattern(idx)
            mix = (wave.sign() * wave.abs().sqrt() + 1) / 2  # sharpened edges, in [0, 1]
            colour = light[lab, :, None, None] * mix[:, None] + dark[lab, :, None, None] * (1 - mix[:, None])
            colour = colour * (0.85 + 0.3 * torch.rand(m, 1, 1, 1, generator=gen))
            colour = colour + 0.06 * torch.randn(colour.shape, generator=gen)
            images[start:start + m] = (colour.clamp(0, 1) * 255).round().to(torch.uint8)
        return images, labels.to(torch.int64)

    train_images, train_labels = make(n_train)
    test_images, test_labels = make(n_test)
    return {"classes": list(SYNTHETIC_CLASSES), "pretrain_images": train_images, "pretrain_labels": train_labels,
            "train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}
