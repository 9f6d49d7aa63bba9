"""db/datasets.py: the explicit data check (image folders, torchvision files, offline downloads)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from db import datasets
from db.config import ConfigError, RunConfig
from db.datasets import DOWNLOADS, check_data


@pytest.fixture(autouse=True)
def fresh_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "_probes", {})
    monkeypatch.delenv(datasets.OFFLINE_ENV, raising=False)


def messages(cfg: RunConfig) -> list[tuple[str, str]]:
    return [(p.field, p.message) for p in check_data(cfg)]


def test_imagefolder_needs_an_existing_folder(tmp_path: Path) -> None:
    def check(**kw: object) -> list[ConfigError]:
        return check_data(RunConfig(dataset="imagefolder", **kw))  # type: ignore[arg-type]

    [missing] = check(data_dir=str(tmp_path / "nope"))
    assert missing.field == "data_dir" and "does not exist" in missing.message
    (tmp_path / "train" / "a").mkdir(parents=True)
    [empty] = check(data_dir=str(tmp_path))
    assert "no class folders with images" in empty.message
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True, exist_ok=True)
        for i in range(4):
            (tmp_path / split / "a" / f"{i}.png").write_bytes(b"x")
    [too_big] = check(data_dir=str(tmp_path), subset_size=5, batch_size=2)
    assert str(too_big).startswith("subset_size: must be <= 4")
    [batch] = check(data_dir=str(tmp_path), batch_size=8)
    assert str(batch).startswith("batch_size: must be <= 4")
    assert check(data_dir=str(tmp_path), batch_size=2) == []


def test_an_image_folder_without_its_test_split_is_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"x")
    [problem] = check_data(RunConfig(dataset="imagefolder", data_dir=str(tmp_path), batch_size=2, subset_size=2))
    assert problem.field == "data_dir" and str(tmp_path / "test") in problem.message


def test_a_grid_looks_at_each_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        for i in range(8):
            (tmp_path / split / "a" / f"{i}.png").write_bytes(b"x")
    scans: list[Path] = []
    real = datasets.count_imagefolder
    monkeypatch.setattr(datasets, "count_imagefolder", lambda d: scans.append(d) or real(d))
    memo: dict = {}
    for batch in (2, 4, 8):
        assert check_data(RunConfig(dataset="imagefolder", data_dir=str(tmp_path), batch_size=batch), memo) == []
    assert len(scans) == 2  # train and test, once


def test_offline_cifar10_is_refused_at_once_saying_where_to_put_the_files(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cifar"
    cfg = RunConfig(dataset="cifar10", data_dir=str(root))
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    [(field, message)] = messages(cfg)
    assert field == "dataset" and "SIMCLR_OFFLINE is set" in message
    assert f"put cifar-10-python.tar.gz into {root}/" in message
    assert f"{root / 'cifar-10-batches-py'}/ holds data_batch_1" in message and "batches.meta" in message
    # Following the advice works: the archive put there by hand is enough, offline.
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(b"archive")
    assert check_data(cfg) == []


def test_an_unreachable_server_is_a_quick_refusal_and_a_reachable_one_is_fine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stl = DOWNLOADS["stl10"]
    cfg = RunConfig(dataset="stl10", data_dir=str(tmp_path / "stl"), batch_size=64)
    try:
        monkeypatch.setitem(DOWNLOADS, "stl10", stl.__class__(f"http://127.0.0.1:{port}/x.tar.gz", stl.archive,
                                                              stl.folder, stl.files))
        assert check_data(cfg) == []  # files absent, but the download can be tried
    finally:
        listener.close()
    monkeypatch.setattr(datasets, "_probes", {})
    t0 = time.monotonic()
    [(field, message)] = messages(cfg)  # the port is closed now: connection refused
    assert time.monotonic() - t0 < datasets.PROBE_TIMEOUT_S + 1
    assert field == "dataset" and "127.0.0.1 cannot be reached" in message
    assert f"put stl10_binary.tar.gz into {tmp_path / 'stl'}/" in message
