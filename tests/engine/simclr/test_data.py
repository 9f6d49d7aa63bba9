"""Data loading: stratified subsets, the shipped cifar10-mini, its build script, the decode cache,
image folders (errors, colour modes, sizes), torchvision downloads (through a local fake server),
STL-10's binary format and the synthetic set."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from db.config import PROJECT_ROOT, RunConfig
from db.datasets import DOWNLOADS, check_data
from engine.simclr import data
from engine.simclr.data import DataError, load_dataset, stratified_subset

SHARED_CIFAR10 = PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10"
BUILD_SCRIPT = PROJECT_ROOT / "scripts" / "build_cifar10_mini.py"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty disk cache and an empty in-memory cache, for tests about caching itself."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SIMCLR_CACHE", str(cache))
    data.clear_memory_cache()
    yield cache
    data.clear_memory_cache()


def save_image(path: Path, image: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    return path


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, colour)


def make_folder(root: Path, per_class: int = 2) -> Path:
    """A tiny train/<class>/ + test/<class>/ tree of solid-colour PNGs (lossless, so exact)."""
    for split in ("train", "test"):
        for label, cls in enumerate(("cat", "dog")):
            for i in range(per_class):
                save_image(root / split / cls / f"{i}.png", solid((100 * label, 10 * i, 50)))
    return root


def folder_cfg(root: Path, **kw: object) -> RunConfig:
    return RunConfig(dataset="imagefolder", data_dir=str(root), batch_size=2, **kw)  # type: ignore[arg-type]


# ============================================================================ stratified subsets
@pytest.mark.parametrize("size", [7, 33, 100, 499])
def test_stratified_subset_is_balanced_sorted_and_unique(size: int) -> None:
    labels = torch.arange(500) % 10
    idx = stratified_subset(labels, size, seed=0)
    counts = torch.bincount(labels[idx], minlength=10)
    assert idx.dtype == torch.int64 and len(idx) == size
    assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(idx, torch.sort(idx).values) and len(torch.unique(idx)) == size


def test_stratified_subset_fills_from_other_classes_when_one_is_small() -> None:
    labels = torch.tensor([0] * 3 + [1] * 50 + [2] * 50)
    counts = torch.bincount(labels[stratified_subset(labels, 60, seed=1)]).tolist()
    assert counts[0] == 3 and sorted(counts[1:]) == [28, 29]


def test_stratified_subset_is_seeded() -> None:
    labels = torch.arange(1000) % 10
    assert torch.equal(stratified_subset(labels, 100, 5), stratified_subset(labels, 100, 5))
    assert not torch.equal(stratified_subset(labels, 100, 5), stratified_subset(labels, 100, 6))


def test_stratified_subset_of_everything_is_everything() -> None:
    labels = torch.arange(50) % 3
    assert torch.equal(stratified_subset(labels, 50, 9), torch.arange(50))


@pytest.mark.parametrize("size", [0, 51])
def test_stratified_subset_rejects_impossible_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 50"):
        stratified_subset(torch.arange(50) % 5, size, 0)


# ============================================================================ cifar10-mini
def test_cifar10_mini_loads_whole() -> None:
    d = load_dataset(RunConfig(dataset="cifar10-mini"))
    assert d.pretrain_images.shape == (5000, 3, 32, 32) and d.pretrain_images.dtype == torch.uint8
    assert d.train_images.shape == (5000, 3, 32, 32) and d.test_images.shape == (1000, 3, 32, 32)
    assert d.train_labels.dtype == d.test_labels.dtype == d.pretrain_indices.dtype == torch.int64
    assert torch.bincount(d.train_labels).tolist() == [500] * 10
    assert torch.bincount(d.test_labels).tolist() == [100] * 10
    assert d.classes == CIFAR_CLASSES
    assert torch.equal(d.pretrain_indices, torch.arange(5000))
    # CIFAR-10's well-known channel statistics (JPEG shifts them slightly; a 10% sample more).
    assert d.mean == pytest.approx((0.491, 0.482, 0.447), abs=0.02)
    assert d.std == pytest.approx((0.247, 0.243, 0.261), abs=0.02)


def test_cifar10_mini_subset_is_stratified_recorded_and_reproducible() -> None:
    cfg = RunConfig(dataset="cifar10-mini", subset_size=300, batch_size=64, seed=3)
    d = load_dataset(cfg)
    assert d.pretrain_images.shape == (300, 3, 32, 32)
    assert torch.equal(d.pretrain_images, d.train_images[d.pretrain_indices])
    assert torch.bincount(d.train_labels[d.pretrain_indices]).tolist() == [30] * 10
    assert d.train_images.shape[0] == 5000  # evaluation always uses the whole labelled split
    assert torch.equal(load_dataset(cfg).pretrain_indices, d.pretrain_indices)
    assert not torch.equal(load_dataset(cfg.replace(seed=4)).pretrain_indices, d.pretrain_indices)
    assert d.mean == pytest.approx(data.channel_stats(d.pretrain_images)[0])


# ============================================================================ build script
def test_build_script_is_reproducible_on_a_tiny_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fresh_cache: Path) -> None:
    source = tmp_path / "src"
    for split, n in (("train", 5), ("test", 3)):
        for label, cls in enumerate(("bird", "ant")):
            for i in range(n):
                save_image(source / split / cls / f"{i:04d}.jpg", solid((200 * label, 20 * i, 90)), "JPEG")
    outs = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for out in outs:
        subprocess.run([sys.executable, str(BUILD_SCRIPT), str(source), "--out", str(out),
                        "--train-per-class", "3", "--test-per-class", "2"], check=True, capture_output=True)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    with np.load(outs[0], allow_pickle=False) as z:
        assert z["classes"].tolist() == ["ant", "bird"]
        assert z["train_labels"].tolist() == [0, 0, 0, 1, 1, 1]
        assert len(z["test_offsets"]) == 5
    # ... and the engine reads it as cifar10-mini.
    monkeypatch.setattr(data, "MINI_ASSET", outs[0])
    d = load_dataset(RunConfig(dataset="cifar10-mini", batch_size=2))
    assert d.train_images.shape == (6, 3, 32, 32) and d.test_images.shape == (4, 3, 32, 32)
    assert d.classes == ["ant", "bird"]
    red = d.train_images[:, 0].float().mean((1, 2))
    assert red[:3].tolist() == pytest.approx([200] * 3, abs=3) and red[3:].tolist() == pytest.approx([0] * 3, abs=3)


def test_build_script_names_a_missing_source(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BUILD_SCRIPT), str(tmp_path / "nowhere"), "--out",
                          str(tmp_path / "x.npz")], capture_output=True, text=True)
    assert out.returncode == 2 and str(tmp_path / "nowhere") in out.stderr


@pytest.mark.slow  # reads 6,000 of the 60,000 shared files: ~1 s on a quiet machine, more on a busy disk
@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"{SHARED_CIFAR10} is absent (a fresh clone has no "
                    "copy of CIFAR-10 to rebuild cifar10-mini from)")
def test_shipped_cifar10_mini_is_what_the_script_builds(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_cifar10_mini", BUILD_SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "rebuilt.npz"
    script.build(SHARED_CIFAR10, out)
    shipped = data.MINI_ASSET.read_bytes()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(shipped).hexdigest()


# ============================================================================ the decode cache
def test_second_load_reads_the_cache_without_decoding(tmp_path: Path, fresh_cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = folder_cfg(make_folder(tmp_path / "imgs"))
    first = load_dataset(cfg)
    assert load_dataset(cfg).train_images is first.train_images  # held in memory
    path = data.cache_file(cfg)
    assert path is not None and path.parent == fresh_cache and path.exists()
    assert not list(fresh_cache.glob("*.tmp"))  # the atomic write left no temp file

    data.clear_memory_cache()

    def no_decode(*args: object) -> None:
        raise AssertionError("decoded although a cache file exists")

    monkeypatch.setattr(data, "_decode_all", no_decode)
    again = load_dataset(cfg)
    assert torch.equal(again.train_images, first.train_images) and again.classes == first.classes
    assert again.mean == pytest.approx(first.mean)


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path, fresh_cache: Path) -> None:
    cfg = folder_cfg(make_folder(tmp_path / "imgs"))
    first = load_dataset(cfg)
    path = data.cache_file(cfg)
    assert path is not None
    path.write_bytes(b"\x00garbage, as a killed writer or a full disk might leave")
    data.clear_memory_cache()
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_dataset(cfg)
    assert torch.equal(again.test_images, first.test_images)
    assert torch.load(path, weights_only=True)["train_images"].shape == (4, 3, 32, 32)  # rewritten


def test_cache_key_follows_the_files(tmp_path: Path, fresh_cache: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    cfg = folder_cfg(root)
    before = data.cache_file(cfg)
    assert load_dataset(cfg).train_images.shape[0] == 4
    save_image(root / "train" / "dog" / "new.png", solid((1, 2, 3)))
    assert data.cache_file(cfg) != before
    assert load_dataset(cfg).train_images.shape[0] == 5
    assert data.cache_file(cfg.replace(image_size=16)) != data.cache_file(cfg)


# ============================================================================ imagefolder
def test_missing_image_folder_is_named(tmp_path: Path, fresh_cache: Path) -> None:
    [problem] = check_data(folder_cfg(tmp_path / "nope"))  # refused before a run is queued
    assert problem.field == "data_dir" and str(tmp_path / "nope") in problem.message
    root = make_folder(tmp_path / "imgs")
    cfg = folder_cfg(root)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match=re.escape(str(root / "test"))):
        load_dataset(cfg)
    shutil.rmtree(root)
    with pytest.raises(DataError, match=re.escape(f"{root} does not exist")):
        load_dataset(cfg)


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_corrupt_image_is_named(tmp_path: Path, fresh_cache: Path, content: bytes | str) -> None:
    root = make_folder(tmp_path / "imgs")
    bad = root / "train" / "dog" / "broken.jpg"
    if content == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
        content = buf.getvalue()[:300]
    bad.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=re.escape(str(bad))):
        load_dataset(folder_cfg(root))


def test_empty_class_folder_is_named(tmp_path: Path, fresh_cache: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    (root / "train" / "eel").mkdir()
    (root / "train" / "eel" / "notes.txt").write_text("not an image")
    (root / "test" / "eel").mkdir()
    with pytest.raises(DataError, match=re.escape(str(root / "train" / "eel"))):
        load_dataset(folder_cfg(root))


def test_test_split_needs_the_same_classes(tmp_path: Path, fresh_cache: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    shutil.rmtree(root / "test" / "dog")
    with pytest.raises(DataError, match="missing: dog"):
        load_dataset(folder_cfg(root))


def test_colour_modes_formats_and_sizes_become_rgb_at_image_size(tmp_path: Path, fresh_cache: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    cat = root / "train" / "cat"
    save_image(cat / "grey.png", Image.new("L", (32, 32), 77))
    save_image(cat / "rgba.png", Image.new("RGBA", (32, 32), (10, 20, 30, 0)))
    save_image(cat / "palette.png", solid((200, 100, 0)).convert("P", palette=Image.Palette.ADAPTIVE))
    save_image(cat / "other.bmp", solid((5, 6, 7)), "BMP")  # not torchvision's: decoded by PIL
    wide = Image.new("RGB", (64, 32), (255, 0, 0))
    wide.paste((0, 0, 255), (16, 0, 48, 32))  # a blue centre square between red margins
    save_image(cat / "wide.png", wide)
    save_image(cat / "big.png", solid((40, 50, 60), (96, 96)))
    (cat / "README.txt").write_text("ignored: not an image suffix")

    d = load_dataset(folder_cfg(root))
    files = sorted(p.name for p in cat.iterdir() if p.suffix != ".txt")  # ImageFolder order
    image = {name: d.train_images[i] for i, name in enumerate(files)}
    assert d.train_images.shape == (len(files) + 2, 3, 32, 32)
    assert image["grey.png"].flatten().unique().tolist() == [77]
    assert image["rgba.png"][:, 0, 0].tolist() == [10, 20, 30]
    assert image["palette.png"][:, 0, 0].tolist() == [200, 100, 0]
    assert image["other.bmp"][:, 0, 0].tolist() == [5, 6, 7]
    # Non-square: shorter side to 32, then the centre crop; the red margins are cut off.
    assert image["wide.png"][:, :, 2:30].float().mean((1, 2)).tolist() == pytest.approx([0, 0, 255], abs=1)
    assert image["big.png"][:, 16, 16].tolist() == [40, 50, 60]


def test_image_size_resizes(tmp_path: Path, fresh_cache: Path) -> None:
    d = load_dataset(folder_cfg(make_folder(tmp_path / "imgs"), image_size=16))
    assert d.train_images.shape == (4, 3, 16, 16) and d.test_images.shape == (4, 3, 16, 16)


# ============================================================================ torchvision downloads
@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving tmp_path/'served': a stand-in for the data set's website."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def fake_cifar10_archive(path: Path) -> None:
    """cifar-10-python.tar.gz in the real pickle format, two images per batch."""
    rng = np.random.default_rng(0)
    members = {"batches.meta": {"label_names": CIFAR_CLASSES}}
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                              "test_batch"]):
        members[name] = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [i, 9 - i]}
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            blob = pickle.dumps(content)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


@pytest.fixture
def fake_cifar10(monkeypatch: pytest.MonkeyPatch, local_server: tuple[str, Path]) -> Path:
    """torchvision's CIFAR10 pointed at a fake archive on the local server; returns the archive."""
    from torchvision.datasets import CIFAR10

    url, served = local_server
    archive = served / "cifar-10-python.tar.gz"
    fake_cifar10_archive(archive)
    monkeypatch.setattr(CIFAR10, "url", f"{url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    # The real per-file checksums cannot match a fake; None means "present is enough".
    monkeypatch.setattr(CIFAR10, "train_list", [[n, None] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, None] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": None})
    return archive


def test_cifar10_is_downloaded_when_missing(tmp_path: Path, fresh_cache: Path, fake_cifar10: Path) -> None:
    root = tmp_path / "cifar"
    cfg = RunConfig(dataset="cifar10", data_dir=str(root), batch_size=2)
    d = load_dataset(cfg)
    assert (root / "cifar-10-batches-py" / "data_batch_5").exists()
    assert d.train_images.shape == (10, 3, 32, 32) and d.test_images.shape == (2, 3, 32, 32)
    assert d.train_labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and d.classes == CIFAR_CLASSES
    with tarfile.open(fake_cifar10) as tar:
        batch = pickle.load(tar.extractfile("cifar-10-batches-py/test_batch"))  # type: ignore[arg-type]
    assert d.test_images.reshape(2, -1).numpy().tolist() == batch["data"].tolist()  # CHW, as stored
    # The key describes the files as downloaded, so the next process finds the cache.
    path = data.cache_file(cfg)
    assert path is not None and path.exists()


def test_cifar10_offline_says_where_to_put_the_files(tmp_path: Path, fresh_cache: Path, fake_cifar10: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # port 9: refused
    root = tmp_path / "cifar"
    cfg = RunConfig(dataset="cifar10", data_dir=str(root), batch_size=2)
    with pytest.raises(DataError) as err:
        load_dataset(cfg)
    message = str(err.value)
    assert f"put cifar-10-python.tar.gz into {root}/" in message
    assert f"{root / 'cifar-10-batches-py'}/ holds data_batch_1" in message and "batches.meta" in message
    # Following the advice works: the archive placed by hand is unpacked without a download.
    shutil.copy(fake_cifar10, root / "cifar-10-python.tar.gz")
    assert load_dataset(cfg).train_images.shape == (10, 3, 32, 32)


def test_download_table_matches_torchvision() -> None:
    """db.datasets checks for (and tells users to fetch) the files torchvision itself expects."""
    from torchvision.datasets import CIFAR10, STL10

    for name, cls in (("cifar10", CIFAR10), ("stl10", STL10)):
        d = DOWNLOADS[name]
        expected = [n for n, _ in cls.train_list + cls.test_list]
        expected += [f for f in (getattr(cls, "meta", {}).get("filename"), getattr(cls, "class_names_file", None)) if f]
        assert (d.url, d.archive, d.folder, list(d.files)) == (cls.url, cls.filename, cls.base_folder, expected)


def fake_stl10(root: Path, n_train: int = 4, n_unlabeled: int = 6, n_test: int = 3) -> None:
    """STL-10's binary layout: uint8 images, column-major 3x96x96, labels 1..10; image i is solid i*10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    start = 0
    for name, n in (("train", n_train), ("unlabeled", n_unlabeled), ("test", n_test)):
        values = np.arange(start, start + n, dtype=np.uint8) * 10
        np.repeat(values, 3 * 96 * 96).tofile(folder / f"{name}_X.bin")
        if name != "unlabeled":
            (np.arange(n, dtype=np.uint8) % 10 + 1).tofile(folder / f"{name}_y.bin")
        start += n
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")


def test_stl10_pretrains_on_the_split_asked_for(tmp_path: Path, fresh_cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import STL10

    monkeypatch.setattr(STL10, "train_list", [[n, None] for n, _ in STL10.train_list])
    monkeypatch.setattr(STL10, "test_list", [[n, None] for n, _ in STL10.test_list])
    fake_stl10(tmp_path / "stl")
    # By default: the unlabeled split, at STL-10's own 96 px (as the seed's code trains).
    default = load_dataset(RunConfig(dataset="stl10", data_dir=str(tmp_path / "stl"), batch_size=2))
    assert default.pretrain_images.shape == (6, 3, 96, 96) and default.train_images.shape == (4, 3, 96, 96)
    assert default.pretrain_images[:, 0, 5, 5].tolist() == [40, 50, 60, 70, 80, 90]
    train_only = RunConfig(dataset="stl10", data_dir=str(tmp_path / "stl"), batch_size=2, pretrain_split="train")
    assert load_dataset(train_only).pretrain_images[:, 0, 5, 5].tolist() == [0, 10, 20, 30]
    cfg = RunConfig(dataset="stl10", data_dir=str(tmp_path / "stl"), batch_size=2, image_size=32,
                    pretrain_split="train+unlabeled")
    d = load_dataset(cfg)
    assert d.pretrain_images.shape == (10, 3, 32, 32)  # 96 px resized to image_size 32
    assert d.pretrain_images[:, 0, 5, 5].tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert d.train_images.shape == (4, 3, 32, 32) and d.train_labels.tolist() == [0, 1, 2, 3]
    assert d.test_images[:, 1, 0, 0].tolist() == [100, 110, 120] and d.classes[0] == "c0"
    # Unlabeled images cannot be stratified: a seeded draw from the whole pool.
    sub = load_dataset(cfg.replace(subset_size=5, seed=1)).pretrain_indices
    assert len(sub) == 5 and torch.equal(sub, load_dataset(cfg.replace(subset_size=5, seed=1)).pretrain_indices)


def test_stl10_offline_says_where_to_put_the_files(tmp_path: Path, fresh_cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import STL10

    monkeypatch.setattr(STL10, "url", "http://127.0.0.1:9/stl10_binary.tar.gz")
    root = tmp_path / "stl"
    with pytest.raises(DataError, match=re.escape(f"put stl10_binary.tar.gz into {root}/")):
        load_dataset(RunConfig(dataset="stl10", data_dir=str(root), batch_size=2))


# ============================================================================ synthetic
def test_synthetic_is_deterministic_balanced_and_learnable(fresh_cache: Path) -> None:
    first = load_dataset(RunConfig(dataset="synthetic"))
    data.clear_memory_cache()
    again = load_dataset(RunConfig(dataset="synthetic"))
    assert torch.equal(first.train_images, again.train_images) and torch.equal(first.test_images, again.test_images)
    assert first.train_images.shape == (1000, 3, 32, 32) and first.test_images.shape == (200, 3, 32, 32)
    assert torch.bincount(first.train_labels).tolist() == [100] * 10 and len(first.classes) == 10
    assert not list(fresh_cache.glob("*"))  # generated, never written to disk

    def features(x: torch.Tensor) -> torch.Tensor:
        x = x.float().flatten(1)
        return torch.nn.functional.normalize(x - x.mean(1, keepdim=True), dim=1)

    # Nearest neighbour on raw pixels is far above chance (0.1): the classes are genuinely distinct.
    nearest = (features(first.test_images) @ features(first.train_images).T).argmax(1)
    assert (first.train_labels[nearest] == first.test_labels).float().mean() > 0.6
    assert load_dataset(RunConfig(dataset="synthetic", image_size=16)).train_images.shape == (1000, 3, 16, 16)


# ------------------------------------------------------------------------------- bounded images
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels in its header (what a decompression bomb looks like)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind, words", [("empty", "is empty (0 bytes)"), ("huge pixels", "pixels per image"),
                                         ("huge file", "MB per image file")])
def test_image_files_are_bounded_and_named(tmp_path: Path, fresh_cache: Path, kind: str, words: str) -> None:
    root = make_folder(tmp_path / "imgs")
    bad = root / "train" / "dog" / "bad.png"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "huge pixels":
        bad.write_bytes(_png_header_only(20_000, 20_000))  # 400 MP: 1.2 GB once decoded
    else:
        with open(bad, "wb") as f:  # sparse: claims 100 MB, stores nothing
            f.truncate(100 * 1024 * 1024)
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*" + re.escape(words)):
        load_dataset(folder_cfg(root))


def test_a_channel_constant_over_the_data_set_normalises_to_finite_values() -> None:
    from engine.simclr.evaluate import normalize

    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    images[:, 2] = 7  # blue is constant everywhere
    mean, std = data.channel_stats(images)
    assert min(std) > 0
    views = normalize(images.float() / 255, torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1))
    assert torch.isfinite(views).all()


def test_loading_without_remembering_keeps_nothing_in_memory(fresh_cache: Path) -> None:
    load_dataset(RunConfig(dataset="synthetic", batch_size=32), remember=False)
    assert data._MEMORY == {}
