"""Quality benchmarks (minutes to hours; not in CI). Each check prints its figures and its target.

    .venv/bin/python bench/quality.py quick probes      # on a CPU: the two CPU checks, one encoder
    .venv/bin/python bench/quality.py gpu --data-dir data/cifar10   # where a GPU is lent

  quick   The CPU quick preset (db/presets.py "quick-cpu": cifar10-mini) against the SAME encoder at
          random initialization (same seed, stem and image size). Target: kNN top-1 at least 10
          points above random init, the whole run within 10 minutes on a 2-core CPU.
  probes  The seed's probe (probe=seed: Spijkervet/SimCLR's linear_evaluation.py, 500 Adam epochs)
          against the fast probe (probe=lbfgs) on the same frozen features (the quick run's encoder,
          or random init when `quick` was not run). Target: accuracies within 1.5 points.
  gpu     ResNet18 (cifar stem), full CIFAR-10, batch 512, 100 epochs with the solo-learn preset
          ("solo-cifar", 10 warm-up epochs). Target: linear top-1 >= 0.856 (the best published
          100-epoch figure we know, dkobak/simclr-cifar10) in under 7 minutes on one H100/H200.

kNN: k=200, T=0.1, the labelled train images as memory bank, the test images as queries. Linear:
the run's own probe (lbfgs unless told), test loss / top-1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from db.config import RunConfig, config_from_text
from db.presets import PRESETS, QUICK_CPU
from db.queries import get_run
from db.queue import create_and_claim
from db.session import make_engine
from engine.jobs.runner import execute_run
from engine.simclr.checkpoint import load_checkpoint
from engine.simclr.data import load_dataset
from engine.simclr.evaluate import baseline_code_probe, extract_features, knn_top1, linear_eval
from engine.simclr.model import build_model
from engine.simclr.trainer import resolve_device


def features(cfg: RunConfig, encoder: torch.nn.Module) -> tuple[dict[str, torch.Tensor], Any]:
    """Frozen features of the labelled train and test images, as the trainer computes them."""
    data = load_dataset(cfg)
    device = resolve_device(cfg.device)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    encoder = encoder.to(device)
    feats = {s: extract_features(encoder, imgs, mean, std, device=device)
             for s, imgs in (("train", data.train_images), ("test", data.test_images))}
    return feats, data


def random_init_encoder(cfg: RunConfig) -> torch.nn.Module:
    """The encoder a run of `cfg` starts from: the trainer seeds torch with cfg.seed, then builds it."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg).encoder


def knn(cfg: RunConfig, feats: dict[str, torch.Tensor], data: Any) -> float:
    return knn_top1(feats["train"], data.train_labels, feats["test"], data.test_labels,
                    k=cfg.knn_k, temperature=cfg.knn_temperature)


def train_run(cfg: RunConfig, workdir: Path) -> tuple[dict[str, Any], float]:
    """Train `cfg` through the real runner (a throw-away SQLite database); returns (run row, seconds)."""
    db = make_engine(f"sqlite:///{workdir / 'quality.db'}")
    run = create_and_claim(db, cfg, "bench")
    run_id = run["id"]
    start = time.perf_counter()
    status = execute_run(db, run_id, run["attempts"], log=lambda m: print("  " + m, flush=True))
    seconds = time.perf_counter() - start
    run = get_run(db, run_id)
    assert status == "completed", run["error"]
    return run, seconds


def trained_encoder(cfg: RunConfig, run: dict[str, Any]) -> torch.nn.Module:
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(Path(run["checkpoint_path"]))["model"])
    return model.encoder


def check_quick(workdir: Path) -> tuple[RunConfig, torch.nn.Module]:
    cfg = config_from_text({**PRESETS[QUICK_CPU].values, "device": "cpu"})
    feats, data = features(cfg, random_init_encoder(cfg))
    base_knn = knn(cfg, feats, data)
    base_loss, base_top1 = linear_eval(feats["train"], data.train_labels, feats["test"], data.test_labels)
    cpu_start = time.process_time()
    run, seconds = train_run(cfg, workdir)
    cpu = time.process_time() - cpu_start
    lift = run["knn_top1"] - base_knn
    print(f"\n[quick] {QUICK_CPU}: resnet18 ({cfg.stem} stem, {cfg.image_size} px), cifar10-mini, {cfg.optimizer} "
          f"lr {cfg.effective_lr:g}, T {cfg.temperature:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
          f"{torch.get_num_threads()} threads: {seconds / 60:.1f} min wall, {cpu / 60:.1f} min of CPU in this "
          f"process (load average {os.getloadavg()[0]:.1f})")
    print(f"{'encoder':<12} {'knn top-1':>10} {'linear top-1':>13} {'linear loss':>12}")
    print(f"{'random init':<12} {base_knn:>10.4f} {base_top1:>13.4f} {base_loss:>12.4f}")
    print(f"{'trained':<12} {run['knn_top1']:>10.4f} {run['linear_top1']:>13.4f} {run['linear_loss']:>12.4f}")
    print(f"kNN lift {100 * lift:+.1f} points (target >= +10), {seconds / 60:.1f} min (target <= 10 on an "
          f"unloaded 2-core CPU): {'MET' if lift >= 0.10 and seconds <= 600 else 'NOT MET'}")
    return cfg, trained_encoder(cfg, run)


def check_probes(cfg: RunConfig, encoder: torch.nn.Module, what: str) -> None:
    feats, data = features(cfg, encoder)
    args = (feats["train"], data.train_labels, feats["test"], data.test_labels)
    start = time.perf_counter()
    fast = linear_eval(*args)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    seed = baseline_code_probe(*args, epochs=500, seed=cfg.seed)
    seed_s = time.perf_counter() - start
    gap = 100 * (seed[1] - fast[1])
    print(f"\n[probes] on {what}: {len(feats['train'])} train / {len(feats['test'])} test features")
    print(f"{'probe':<8} {'top-1':>8} {'loss':>8} {'seconds':>8}")
    print(f"{'lbfgs':<8} {fast[1]:>8.4f} {fast[0]:>8.4f} {fast_s:>8.1f}")
    print(f"{'seed':<8} {seed[1]:>8.4f} {seed[0]:>8.4f} {seed_s:>8.1f}")
    print(f"seed - lbfgs: {gap:+.2f} points (target within 1.5): {'MET' if abs(gap) <= 1.5 else 'NOT MET'}")


def check_gpu(workdir: Path, data_dir: str | None) -> None:
    values = {**PRESETS["solo-cifar"].values, "batch_size": "512", "epochs": "100", "device": "cuda",
              "eval_every": "100"}
    if data_dir:
        values["data_dir"] = data_dir
    cfg = config_from_text(values)
    run, seconds = train_run(cfg, workdir)
    print(f"\n[gpu] solo-cifar, resnet18 cifar stem, CIFAR-10, batch 512, 100 epochs on "
          f"{torch.cuda.get_device_name()}: {seconds / 60:.1f} min, kNN top-1 {run['knn_top1']:.4f}, "
          f"linear top-1 {run['linear_top1']:.4f} (target >= 0.856 in < 7 min): "
          f"{'MET' if run['linear_top1'] >= 0.856 and seconds < 420 else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checks", nargs="+", choices=("quick", "probes", "gpu"))
    parser.add_argument("--data-dir", help="CIFAR-10 folder for the gpu check (default data/cifar10)")
    parser.add_argument("--checkpoint", type=Path,
                        help="probes without quick: the encoder of this quick-cpu run's checkpoint.pt (e.g. the "
                             "one a previous `quick` left under /tmp/bench-quality-*/runs/) instead of random init")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    os.environ.setdefault("SIMCLR_RUNS_DIR", str(workdir / "runs"))
    cfg, encoder, what = None, None, ""
    if "quick" in args.checks:
        cfg, encoder = check_quick(workdir)
        what = f"the {QUICK_CPU} run's encoder"
    if "probes" in args.checks:
        if cfg is None:
            cfg = config_from_text({**PRESETS[QUICK_CPU].values, "device": "cpu"})
            if args.checkpoint:
                encoder, what = trained_encoder(cfg, {"checkpoint_path": args.checkpoint}), f"{args.checkpoint}"
            else:
                encoder, what = random_init_encoder(cfg), "a random-init encoder"
        check_probes(cfg, encoder, what)
    if "gpu" in args.checks:
        check_gpu(workdir, args.data_dir)


if __name__ == "__main__":
    main()
