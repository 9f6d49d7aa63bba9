"""Quality check: does brief SimCLR training on cifar10-mini beat the same encoder at random init?

    .venv/bin/python bench/quality.py [--epochs 8] [--batch-size 128] [--stem imagenet]

Prints the kNN top-1 (k=200, T=0.1, full cifar10-mini train as memory bank, its test set as
queries) and the linear probe of the random encoder and of the trained one, with the budget.
A benchmark, not a test: it takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


import torch

from db.config import RunConfig
from db.queries import get_run
from db.queue import create_and_claim
from db.session import make_engine
from engine.simclr.data import load_dataset
from engine.simclr.evaluate import extract_features, knn_top1, linear_eval
from engine.simclr.model import build_model
from engine.jobs.runner import execute_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--optimizer", default="lars")
    args = parser.parse_args()

    cfg = RunConfig(dataset="cifar10-mini", encoder="resnet18", stem=args.stem, batch_size=args.batch_size,
                    epochs=args.epochs, optimizer=args.optimizer, eval_every=args.epochs, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    os.environ.setdefault("SIMCLR_RUNS_DIR", str(tmp / "runs"))

    data = load_dataset(cfg)
    torch.manual_seed(cfg.seed)
    random_encoder = build_model(cfg).encoder
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    feats = {s: extract_features(random_encoder, imgs, mean, std, device=torch.device("cpu"))
             for s, imgs in (("train", data.train_images), ("test", data.test_images))}
    rand_knn = knn_top1(feats["train"], data.train_labels, feats["test"], data.test_labels, k=cfg.knn_k,
                        temperature=cfg.knn_temperature)
    rand_lin = linear_eval(feats["train"], data.train_labels, feats["test"], data.test_labels)

    db = make_engine(f"sqlite:///{tmp / 'quality.db'}")
    run = create_and_claim(db, cfg, "bench")
    run_id = run["id"]
    start = time.perf_counter()
    status = execute_run(db, run_id, run["attempts"], log=lambda m: print("  " + m, flush=True))
    minutes = (time.perf_counter() - start) / 60
    run = get_run(db, run_id)
    assert status == "completed", run["error"]

    print(f"budget: resnet18 ({cfg.stem} stem), cifar10-mini (5,000 train / 1,000 test), batch {cfg.batch_size}, "
          f"{cfg.optimizer}, {cfg.epochs} epochs, {torch.get_num_threads()} CPU threads: {minutes:.1f} min")
    print(f"{'encoder':<10} {'knn top-1':>10} {'linear top-1':>13} {'linear loss':>12}")
    print(f"{'random':<10} {rand_knn:>10.4f} {rand_lin[1]:>13.4f} {rand_lin[0]:>12.4f}")
    print(f"{'trained':<10} {run['knn_top1']:>10.4f} {run['linear_top1']:>13.4f} {run['linear_loss']:>12.4f}")


if __name__ == "__main__":
    main()
