"""Is a run's data there? The explicit check the form, the CLI and the run's process make before training.

`RunConfig` validates values only and never touches the file system (the form builds one per grid
combination on every rerun). What depends on the disk — an image folder's contents, a
torchvision data set's files, whether a missing one can be downloaded from here — is checked by
`check_data(config)`, which returns every problem as a ConfigError naming its field:

- imagefolder: train/ and test/ hold class folders with images; subset_size and batch_size fit
  the images found;
- cifar10, stl10: the files are in the data folder (unpacked, or the archive put there by hand),
  or their download server answers. Offline, a missing set is refused at once with the message
  that says where to put the files, instead of being queued and failing later.

Torch-free (the dashboard imports it): the file lists below are torchvision's, copied as data;
tests/db/test_datasets.py checks them against torchvision's own classes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from db.config import IMAGE_SUFFIXES, ConfigError, RunConfig, known_pretrain_size


@dataclass(frozen=True)
class Download:
    """Where torchvision fetches a data set from, and the files it leaves in the data folder."""

    url: str
    archive: str  # the archive's name; put into the data folder, it is unpacked on the next run
    folder: str  # torchvision's base_folder under the data folder
    files: tuple[str, ...]  # what that folder must hold


DOWNLOADS: dict[str, Download] = {
    "cifar10": Download("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                        "cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                                "data_batch_5", "test_batch", "batches.meta")),
    "stl10": Download("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "stl10_binary.tar.gz",
                      "stl10_binary", ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin",
                                       "class_names.txt")),
}

OFFLINE_ENV = "SIMCLR_OFFLINE"  # set to 1: never try a download; a missing data set is refused at once
PROBE_TIMEOUT_S = 3.0  # a server that does not answer within this is taken as unreachable...
PROBE_MEMORY_S = 300.0  # ...and the answer is remembered this long (the form asks on every rerun)
_probes: dict[str, tuple[float, bool]] = {}
_probes_lock = threading.Lock()


def where_to_put(dataset: str, root: Path) -> str:
    """The advice for a missing torchvision data set: which file to fetch and where it goes."""
    d = DOWNLOADS[dataset]
    return (f"Without internet access, fetch {d.url} on another machine and put {d.archive} into {root}/ "
            f"(it is unpacked on the next run), or unpack it yourself so that {root / d.folder}/ holds "
            f"{', '.join(d.files)}. Then run again. (Or use the offline data sets: cifar10-mini, or "
            f"imagefolder with --data-dir pointing at train/<class>/ and test/<class>/ folders.)")


def files_present(dataset: str, root: Path) -> bool:
    d = DOWNLOADS[dataset]
    return (root / d.archive).is_file() or all((root / d.folder / f).is_file() for f in d.files)


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def can_download(url: str) -> bool:
    """Whether `url`'s server accepts a connection within PROBE_TIMEOUT_S (remembered for a while).

    A probe, not the download: offline, name resolution alone can hang for many seconds, so the
    connection is tried in a thread that is simply abandoned when it does not answer in time.
    """
    if offline():
        return False
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    key = f"{host}:{port}"
    with _probes_lock:
        known = _probes.get(key)
        if known and time.monotonic() - known[0] < PROBE_MEMORY_S:
            return known[1]
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, name=f"probe-{key}", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    ok = bool(answer and answer[0])
    with _probes_lock:
        _probes[key] = (time.monotonic(), ok)
    return ok


def count_imagefolder(split_dir: Path) -> int:
    """Image files in `split_dir/<class>/`; raises ConfigError('data_dir', ...) when unusable."""
    if not split_dir.is_dir():
        raise ConfigError("data_dir", f"{split_dir} does not exist or is not a folder "
                                      f"(imagefolder needs train/<class>/ and test/<class>/)")
    total = 0
    classes = 0
    for entry in os.scandir(split_dir):
        if entry.is_dir():
            classes += 1
            # Hidden files (macOS "._x.jpg" and the like) are not images; the loader skips them too.
            total += sum(1 for e in os.scandir(entry.path)
                         if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith("."))
    if classes == 0 or total == 0:
        raise ConfigError("data_dir", f"{split_dir} holds no class folders with images")
    return total


def pretrain_size(cfg: RunConfig) -> int | None:
    """Images available for pretraining, or None when they cannot be counted (a missing folder)."""
    known = known_pretrain_size(cfg.dataset, cfg.pretrain_split)
    if known is not None:
        return known
    if cfg.dataset == "imagefolder" and cfg.resolved_data_dir is not None:
        try:
            return count_imagefolder(cfg.resolved_data_dir / "train")
        except ConfigError:
            return None
    return None


def _source_problem(cfg: RunConfig) -> tuple[int | None, ConfigError | None]:
    """(images for pretraining when counted here, the problem with the data source or None)."""
    root = cfg.resolved_data_dir
    if cfg.dataset == "imagefolder":
        assert root is not None  # RunConfig requires data_dir for imagefolder
        try:
            total = count_imagefolder(root / "train")
            count_imagefolder(root / "test")
        except ConfigError as e:
            return None, e
        return total, None
    if cfg.dataset in DOWNLOADS:
        assert root is not None
        if not files_present(cfg.dataset, root) and not can_download(DOWNLOADS[cfg.dataset].url):
            host = urlsplit(DOWNLOADS[cfg.dataset].url).hostname
            why = f"{OFFLINE_ENV} is set" if offline() else f"{host} cannot be reached from here"
            return None, ConfigError("dataset", f"{cfg.dataset} is not in {root} and cannot be downloaded "
                                                f"({why}). {where_to_put(cfg.dataset, root)}")
    return None, None


def check_data(cfg: RunConfig, memo: dict[Any, Any] | None = None) -> list[ConfigError]:
    """Every problem with `cfg`'s data, each naming its field; [] when the run can load its data.

    `memo` (any dict, shared over the calls for one grid) makes each data source be looked at once.
    """
    key = (cfg.dataset, str(cfg.resolved_data_dir))
    if memo is not None and key in memo:
        total, problem = memo[key]
    else:
        total, problem = _source_problem(cfg)
        if memo is not None:
            memo[key] = total, problem
    if problem is not None:
        return [problem]
    if total is None:  # sizes known from KNOWN_SIZES were checked by RunConfig already
        return []
    if cfg.subset_size is not None and cfg.subset_size > total:
        return [ConfigError("subset_size", f"must be <= {total}, the images in {cfg.dataset}; got {cfg.subset_size}")]
    if cfg.subset_size is None and total < cfg.batch_size:
        return [ConfigError("batch_size", f"must be <= {total}, the images in {cfg.dataset}; got {cfg.batch_size}")]
    return []
