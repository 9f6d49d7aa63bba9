#!/usr/bin/env python
"""Build engine/assets/cifar10-mini.npz: the offline default data set shipped with SimCLR Lab.

It holds 500 train and 100 test images per CIFAR-10 class, taken from a CIFAR-10 ImageFolder tree
(train/<class>/*.jpg, test/<class>/*.jpg; by default ../shared/datasets/cifar10 next to the
project), stored as the original JPEG bytes so the file stays ~5-6 MB:

    classes        <U  [10]       class names, in label order (sorted folder names)
    {split}_jpeg   uint8 [B]      every image's JPEG bytes, concatenated
    {split}_offsets int64 [N+1]   image i is {split}_jpeg[offsets[i]:offsets[i+1]]
    {split}_labels int64 [N]
    {split}_files  S  [N]         source path of each image, "<class>/<file>", for provenance

The pick is deterministic and independent of library versions: within each class the files are
ranked by the SHA-256 of "<split>/<class>/<file>" and the first N are taken (then kept in file-name
order). The .npz is written byte for byte reproducibly (fixed zip timestamps), so rebuilding from
the same source gives an identical file.

Usage:  python scripts/build_cifar10_mini.py [SOURCE] [--out PATH] [--train-per-class 500]
                                             [--test-per-class 100]
Needs only numpy and Pillow (no torch), so it runs anywhere the project's venv does.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10"
DEFAULT_OUT = PROJECT_ROOT / "engine" / "assets" / "cifar10-mini.npz"
JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SIDE = 32


class BuildError(RuntimeError):
    """The source tree is not usable; the message says what is wrong and where."""


def pick(split_dir: Path, split: str, per_class: int) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted folder names) and the chosen (relative path, label) pairs of one split."""
    if not split_dir.is_dir():
        raise BuildError(f"{split_dir} is not a folder (expected {split}/<class>/*.jpg)")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        raise BuildError(f"{split_dir} holds no class folders")
    chosen: list[tuple[str, int]] = []
    for label, cls in enumerate(classes):
        names = [e.name for e in os.scandir(split_dir / cls) if e.is_file() and e.name.lower().endswith(JPEG_SUFFIXES)]
        if len(names) < per_class:
            raise BuildError(f"{split_dir / cls} has {len(names)} JPEG files; {per_class} are needed")
        # Rank by a hash of the path: a fixed pseudo-random pick that no library upgrade can change.
        ranked = sorted(names, key=lambda n: hashlib.sha256(f"{split}/{cls}/{n}".encode()).hexdigest())
        chosen += [(f"{cls}/{n}", label) for n in sorted(ranked[:per_class])]
    return classes, chosen


def read_jpegs(split_dir: Path, items: list[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Concatenated JPEG bytes, offsets, labels and file names; checks each image is 32x32 RGB."""
    blobs: list[bytes] = []
    for rel, _ in items:
        data = (split_dir / rel).read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "JPEG" or im.size != (IMAGE_SIDE, IMAGE_SIDE) or im.mode != "RGB":
                    raise BuildError(f"{split_dir / rel}: expected a {IMAGE_SIDE}x{IMAGE_SIDE} RGB JPEG, "
                                     f"got {im.format} {im.size[0]}x{im.size[1]} {im.mode}")
                im.load()  # a full decode, so a truncated file fails here, not in a user's run
        except BuildError:
            raise
        except Exception as exc:
            raise BuildError(f"{split_dir / rel} is not a readable JPEG: {exc}") from exc
        blobs.append(data)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return {
        "jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": offsets,
        "labels": np.array([label for _, label in items], dtype=np.int64),
        "files": np.array([rel.encode() for rel, _ in items], dtype="S"),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez, but reproducible: fixed timestamps and host system, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3  # as on Unix, whatever builds it
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)


def build(source: Path, out: Path, train_per_class: int = 500, test_per_class: int = 100) -> dict[str, np.ndarray]:
    """Pick, read, check and write; returns the arrays written."""
    if not source.is_dir():
        raise BuildError(f"source folder {source} does not exist (expected a CIFAR-10 ImageFolder tree "
                         f"with train/<class>/ and test/<class>/)")
    arrays: dict[str, np.ndarray] = {}
    classes: list[str] | None = None
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        split_classes, items = pick(source / split, split, per_class)
        if classes is not None and split_classes != classes:
            raise BuildError(f"{source / 'test'} has classes {split_classes}, {source / 'train'} has {classes}")
        classes = split_classes
        for key, value in read_jpegs(source / split, items).items():
            arrays[f"{split}_{key}"] = value
    assert classes is not None
    write_npz(out, {"classes": np.array(classes), **arrays})
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE,
                        help=f"CIFAR-10 ImageFolder tree (default {DEFAULT_SOURCE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default {DEFAULT_OUT})")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        arrays = build(args.source, args.out, args.train_per_class, args.test_per_class)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {len(arrays['train_labels'])} train + {len(arrays['test_labels'])} test images, "
          f"{args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
