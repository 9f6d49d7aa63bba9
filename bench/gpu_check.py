"""One command that proves the GPU path works and measures how fast it is (issue 9).

    .venv/bin/python bench/gpu_check.py OUT_DIR [--data PATH] [--budget-s 450] [--skip NAME ...]
    .venv/bin/python bench/gpu_check.py OUT_DIR --quick     # CPU, tiny model and data, seconds (a test runs it)

Offline. Sections, each under its own time limit so that the whole stays under 8 minutes on one
H100/H200 (a section that runs out of time is reported as such, and the next one starts):

  data      full CIFAR-10 (50,000 + 10,000) through the engine's loader and decode cache: from
            data/cifar10 (torchvision's copy) when present, else an ImageFolder of JPEGs
            (../shared/datasets/cifar10), else a pack of those JPEGs (.npz, as
            scripts/build_cifar10_mini.py writes it), unpacked once next to the decode cache
  tests     the suite's CUDA tests (`pytest -m cuda`)
  speed     ResNet18 cifar stem, batch 512, bf16: views/s of (a) the engine's whole training step
            (through the trainer) and (b) the model-only ceiling, each eager (NCHW), with
            channels_last, and with torch.compile (+ channels_last); a/b
  sync      synchronizing CUDA calls in 20 training steps (torch.cuda.set_sync_debug_mode("warn"))
  augment   the batched augmentation alone, views/s
  logging   share of the step's time that metric logging costs (engine with and without it)
  memory    peak GPU memory of the engine's step
  knn       the kNN monitor on 50,000 + 10,000 images (features + vote)
  train10   10 epochs of full CIFAR-10 with RECIPE below, kNN every epoch (the curve is printed)
  resnet50  (a) and (b) for ResNet50, if time is left

Prints one table and writes it as OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (rewritten
after every section, so a run cut short still leaves what it measured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

import train_throughput as tp  # bench/ is this script's folder, first on sys.path
from db.config import PROJECT_ROOT, RunConfig, run_dir
from db.identity import database_id
from db.queue import create_and_claim
from db.session import make_engine
from engine.simclr import trainer
from engine.simclr.data import cache_dir, load_dataset

# The recipe of the 10-epoch run: short-schedule settings (Adam; the paper's CIFAR jitter 0.5; a
# lower temperature), at the batch the speed figures use.
RECIPE = dict(optimizer="adam", lr=1e-3, temperature=0.2, jitter_strength=0.5, batch_size=512)
# Seconds per section on a GPU: data + tests + speed + the rest + train10 stays under 8 minutes.
LIMITS = {"data": 90, "tests": 90, "speed": 150, "sync": 30, "augment": 15, "logging": 40, "memory": 5,
          "knn": 30, "train10": 120, "resnet50": 60}
DATA_CANDIDATES = (PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10",
                   PROJECT_ROOT / "shared" / "datasets" / "cifar10",
                   PROJECT_ROOT / "shared" / "cifar10-full.npz")


class SectionTimeout(Exception):
    pass


@dataclass
class Report:
    out_dir: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, section: str, what: str, value: Any, unit: str = "", target: str = "",
            ok: bool | None = None) -> None:
        self.rows.append(dict(section=section, what=what, value=value, unit=unit, target=target, ok=ok))
        self.write()

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "gpu_check.json").write_text(json.dumps({**self.header, "rows": self.rows}, indent=1))
        (self.out_dir / "gpu_check.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = [" ".join(f"{k}: {v};" for k, v in self.header.items()), "",
                 "| section | what | value | unit | target | ok |", "| --- | --- | --: | --- | --- | --- |"]
        for r in self.rows:
            ok = {True: "yes", False: "**NO**", None: ""}[r["ok"]]
            lines.append(f"| {r['section']} | {r['what']} | {fmt(r['value'])} | {r['unit']} | {r['target']} | {ok} |")
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        width = max((len(r["what"]) for r in self.rows), default=10)
        out = []
        for r in self.rows:
            ok = {True: "ok", False: "FAIL", None: ""}[r["ok"]]
            out.append(f"{r['section']:<9} {r['what']:<{width}} {fmt(r['value']):>12} {r['unit']:<8} "
                       f"{r['target']:<10} {ok}")
        return "\n".join(out)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in this (main) thread after `seconds`, wherever the section is."""
    def expire(signum: int, frame: Any) -> None:
        raise SectionTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ============================================================================ measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cifar10_config(data: str | None) -> RunConfig:
    """Full CIFAR-10 as the engine loads it: torchvision's copy if present, else a JPEG ImageFolder."""
    if data is None and (PROJECT_ROOT / "data" / "cifar10" / "cifar-10-batches-py").is_dir():
        return RunConfig(dataset="cifar10", **RECIPE)
    candidates = [Path(data)] if data else [p for p in DATA_CANDIDATES if p.exists()]
    if not candidates:
        raise FileNotFoundError("no CIFAR-10 here: give --data (an ImageFolder with train/ and test/, or a "
                                f".npz pack); looked in data/cifar10 and {', '.join(map(str, DATA_CANDIDATES))}")
    source = candidates[0]
    folder = unpack(source) if source.suffix == ".npz" else source
    return RunConfig(dataset="imagefolder", data_dir=str(folder), **RECIPE)


def unpack(pack: Path) -> Path:
    """An .npz of JPEG bytes (scripts/build_cifar10_mini.py's layout) -> an ImageFolder, once."""
    folder = cache_dir() / f"{pack.stem}-imagefolder"
    done = folder / ".complete"
    if done.exists():
        return folder
    with np.load(pack, allow_pickle=False) as z:
        classes = [str(c) for c in z["classes"]]
        for split in ("train", "test"):
            data, offsets, labels = z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"{split}_labels"]
            for c in classes:
                (folder / split / c).mkdir(parents=True, exist_ok=True)
            for i, label in enumerate(labels.tolist()):
                jpeg = data[offsets[i]:offsets[i + 1]].tobytes()
                (folder / split / classes[label] / f"{i:05d}.jpg").write_bytes(jpeg)
    done.touch()
    return folder


def engine_views_per_sec(cfg: RunConfig, db_url: str, warmup: int, steps: int) -> float:
    return 2 * tp.engine_images_per_sec(cfg, db_url, warmup, steps)


def ceiling_views_per_sec(cfg: RunConfig, warmup: int, steps: int) -> float:
    return 2 * tp.ceiling_images_per_sec(cfg, warmup, steps)


@contextlib.contextmanager
def channels_last(device: torch.device, on: bool) -> Iterator[None]:
    saved = dict(trainer.CHANNELS_LAST)
    trainer.CHANNELS_LAST[device.type] = on
    try:
        yield
    finally:
        trainer.CHANNELS_LAST.clear()
        trainer.CHANNELS_LAST.update(saved)


class NullLogger:
    """The trainer's MetricLogger with every write removed, to price the real one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.progress: dict[str, Any] = {}

    def log(self, *args: Any) -> None: ...
    def set_progress(self, **values: Any) -> None: ...
    def flush(self) -> None: ...


def count_syncs(fn: Callable[[], None]) -> int:
    """Synchronizing CUDA calls made by fn, as torch's sync debug mode reports them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


# ============================================================================ the check
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--data", help="CIFAR-10 ImageFolder or .npz pack (default: see the data section)")
    parser.add_argument("--quick", action="store_true", help="CPU, tiny synthetic data and model: seconds")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="stop starting sections after this (not with --quick: CPU figures have no limits)")
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(LIMITS), help="sections to leave out")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    quick = args.quick
    if quick:  # a busy CPU may be 10x slower than usual: the limits are for the GPU run
        args.budget_s = float("inf")
    device = torch.device("cpu" if quick else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --quick on a CPU", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.environ.setdefault("SIMCLR_RUNS_DIR", str(tmp / "runs"))
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    report = Report(args.out_dir, {
        "mode": "quick (CPU)" if quick else "full", "torch": torch.__version__, "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    # quick: sizes that finish in seconds on a CPU; the full run's are the issue's.
    batch = 16 if quick else 512
    warmup, steps = (1, 1) if quick else (5, 20)
    rounds = 1 if quick else 2
    state: dict[str, Any] = {}

    def section(name: str, run: Callable[[], None]) -> None:
        left = args.budget_s - (time.perf_counter() - started)
        if name in args.skip:
            report.add(name, "skipped", "--skip")
            return
        if left < 5 or (name == "resnet50" and left < LIMITS[name]):
            report.add(name, "skipped", f"out of time ({left:.0f} s left)")
            return
        t0 = time.perf_counter()
        try:
            with time_limit(600 if quick else min(LIMITS[name], left)):
                run()
        except SectionTimeout:
            report.add(name, "TIMED OUT", f"after {time.perf_counter() - t0:.0f} s", ok=False)
        except Exception as exc:  # noqa: BLE001 — one broken section must not hide the others' figures
            report.add(name, "ERROR", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200],
                       ok=False)
            import traceback

            traceback.print_exc()
        print(f"[{name}: {time.perf_counter() - t0:.1f} s]", flush=True)

    def base_config(**changes: Any) -> RunConfig:
        cfg: RunConfig = state["cfg"]
        return cfg.replace(**{**dict(batch_size=batch, epochs=1, eval_every=1000, compile="off",
                                     device=device.type), **changes})

    def data() -> None:
        if quick:
            state["cfg"] = RunConfig(dataset="synthetic", image_size=8, stem="imagenet", projection_dim=16,
                                     knn_k=20, **{**RECIPE, "batch_size": batch})
        else:
            state["cfg"] = cifar10_config(args.data)
        t0 = time.perf_counter()
        d = load_dataset(state["cfg"])
        state["data"] = d
        report.add("data", f"{state['cfg'].dataset} loaded ({len(d.train_images):,} + {len(d.test_images):,})",
                   time.perf_counter() - t0, "s", "", len(d.test_images) == (200 if quick else 10000))

    def tests() -> None:
        if quick:
            report.add("tests", "pytest -m cuda", "skipped: no CUDA in --quick")
            return
        # tests/engine holds the CUDA tests; the browser and database tests need no GPU and may
        # lack their tools on a GPU machine.
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/engine"]
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=LIMITS["tests"] - 5)
        print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        report.add("tests", "pytest -m cuda", last.strip("= "), "", "all pass",
                   proc.returncode == 0 and "passed" in last and "skipped" not in last)

    def speed(encoder: str = "resnet18", variants: tuple[str, ...] = ("eager", "channels_last", "compile")) -> None:
        for variant in variants:
            if quick and variant == "compile":
                report.add("speed", f"{encoder} compile", "skipped: compiling takes minutes on a CPU")
                continue
            cfg = base_config(encoder=encoder, stem="cifar" if not quick else "imagenet",
                              compile="on" if variant == "compile" else "off")
            with channels_last(device, variant != "eager"):
                t0 = time.perf_counter()
                a = engine_views_per_sec(cfg, db_url, warmup, steps)
                b = ceiling_views_per_sec(cfg, warmup, steps)
            label = f"{encoder} {variant}"
            report.add("speed", f"(a) engine step, {label}", a, "views/s")
            report.add("speed", f"(b) model-only ceiling, {label}", b, "views/s")
            report.add("speed", f"a/b, {label}", a / b, "", ">= 0.9", None if quick else a / b >= 0.9)
            if not quick and encoder == "resnet18":
                epoch_s = 100_000 / a
                report.add("speed", f"CIFAR-10 epoch (100,000 views), {label}", epoch_s, "s", "< 4", epoch_s < 4)
            print(f"  {label}: {time.perf_counter() - t0:.1f} s", flush=True)

    def build() -> trainer.Training:
        if "training" not in state:
            cfg = base_config(stem="cifar" if not quick else "imagenet")
            state["training"] = trainer.build_training(cfg, device, state["data"])
        return state["training"]

    def sync_check() -> None:
        if device.type != "cuda":
            report.add("sync", "sync debug mode", "skipped: CUDA only (the test suite guards host reads)")
            return
        t = build()
        batches = t.batches()
        for _ in range(3):
            t.step(next(batches))
        torch.cuda.synchronize()
        control = count_syncs(lambda: torch.ones(1, device=device).item())
        n = count_syncs(lambda: [t.step(next(batches)) for _ in range(20)])
        report.add("sync", "synchronizing calls in 20 steps", n, "", "0", n == 0 and control >= 1)

    def augment() -> None:
        t = build()
        x = t.images[:batch]
        two = torch.cat([x, x])
        t.augment(two, t.aug_gen)
        sync(device)
        n, t0 = (3 if quick else 50), time.perf_counter()
        for _ in range(n):
            t.augment(two, t.aug_gen)
        sync(device)
        report.add("augment", f"batched augmentation alone, batch {batch}", n * len(two) / (time.perf_counter() - t0),
                   "views/s")

    def logging_share() -> None:
        cfg = base_config(stem="cifar" if not quick else "imagenet")
        real = null = 0.0
        for _ in range(rounds):  # interleaved, best of each
            real = max(real, engine_views_per_sec(cfg, db_url, warmup, steps))
            saved = trainer.MetricLogger
            trainer.MetricLogger = NullLogger  # type: ignore[misc, assignment]
            try:
                null = max(null, engine_views_per_sec(cfg, db_url, warmup, steps))
            finally:
                trainer.MetricLogger = saved  # type: ignore[misc]
        share = 1 - real / null
        report.add("logging", "share of the step spent on metric logging", 100 * share, "%", "< 1",
                   None if quick else share < 0.01)

    def memory() -> None:
        if device.type != "cuda":
            report.add("memory", "peak GPU memory", "skipped: CUDA only")
            return
        import gc

        gc.collect()  # nothing of the earlier sections' runs may count
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        engine_views_per_sec(base_config(stem="cifar"), db_url, 1, 2)
        report.add("memory", f"peak GPU memory, engine step at batch {batch}",
                   torch.cuda.max_memory_allocated() / 2**30, "GiB")

    def knn() -> None:
        t = build()
        t.features()  # warm-up (cuDNN picks its kernels)
        sync(device)
        t0 = time.perf_counter()
        feats = t.features()
        sync(device)
        t1 = time.perf_counter()
        top1 = t.knn(feats)
        t2 = time.perf_counter()
        n = f"{len(feats['train']):,} + {len(feats['test']):,}"
        report.add("knn", f"features of {n} images", t1 - t0, "s")
        report.add("knn", "weighted kNN vote (k=200)", t2 - t1, "s")
        report.add("knn", "kNN monitor in all", t2 - t0, "s", "< 1", None if quick else t2 - t0 < 1)
        report.add("knn", "top-1 of an untrained encoder", top1, "")

    def train10() -> None:
        epochs = 1 if quick else 10
        cfg = state["cfg"].replace(epochs=epochs, eval_every=1, device=device.type, compile="auto",
                                   **({"batch_size": batch, "subset_size": 64} if quick else {}))
        db = make_engine(db_url)
        run_id = create_and_claim(db, cfg, "bench")["id"]  # claimed like any run (one claim path)
        curve: list[str] = []

        def record(message: str) -> None:
            print(f"  {message}", flush=True)
            curve.append(message)

        t0 = time.perf_counter()
        summary = trainer.train(cfg, trainer.RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)),
                                                        log=record))
        report.add("train10", f"{epochs} epochs ({cfg.optimizer}, lr {cfg.effective_lr:g}, T {cfg.temperature:g}, "
                   f"batch {cfg.batch_size}, compile {cfg.compile}), wall", time.perf_counter() - t0, "s")
        knn_curve = [m.split("knn top-1 ")[1] for m in curve if "knn top-1" in m]
        report.add("train10", "kNN top-1 by epoch", " ".join(knn_curve))
        report.add("train10", "final kNN / linear top-1",
                   f"{summary['knn_top1']:.3f} / {summary['linear_top1']:.3f}")
        compile_lines = [m for m in curve if m.startswith("torch.compile")]
        if compile_lines:
            report.add("train10", "compile warm-up", compile_lines[0].split("took ")[1].split(" ")[0], "s")

    section("data", data)
    if "cfg" in state:
        section("tests", tests)
        section("speed", speed)
        section("memory", memory)
        section("sync", sync_check)
        section("augment", augment)
        section("logging", logging_share)
        section("knn", knn)
        section("train10", train10)
        if not quick:
            section("resnet50", lambda: speed("resnet50", ("channels_last", "compile")))
    report.header["wall_s"] = round(time.perf_counter() - started, 1)
    report.write()
    print(f"\ngpu_check ({report.header['mode']}) on {report.header['device']}, torch {torch.__version__}, "
          f"{report.header['wall_s']} s")
    print(report.table())
    print(f"\nwritten: {args.out_dir / 'gpu_check.json'}, {args.out_dir / 'gpu_check.md'}")
    return 1 if any(r["ok"] is False for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
