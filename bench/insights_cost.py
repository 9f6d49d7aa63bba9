"""What a run's end-of-run insights (engine/simclr/insights.py) cost, next to one evaluation pass.

    .venv/bin/python bench/insights_cost.py [--stems cifar imagenet] [--device cpu]

On cifar10-mini with ResNet18 at random init (the cost does not depend on the weights): the
wall and CPU seconds of insights.compute (the untrained encoder's features of the bank and the
queries, the neighbour searches, the PCA map) and of one feature pass over the train and test
splits, which every kNN evaluation makes. Insights run once per run, after the linear probe.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from db.config import RunConfig
from engine.simclr import insights
from engine.simclr.data import load_dataset
from engine.simclr.evaluate import extract_features
from engine.simclr.model import build_model


def _timed(fn):  # noqa: ANN001, ANN202
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stems", nargs="+", default=["cifar", "imagenet"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    for stem in args.stems:
        cfg = RunConfig(dataset="cifar10-mini", stem=stem, subset_size=500)
        data = load_dataset(cfg)
        mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
        encoder = build_model(cfg).encoder.to(device)
        feats, pass_wall, pass_cpu = _timed(lambda: {
            split: extract_features(encoder, imgs, mean, std, device=device)
            for split, imgs in (("train", data.train_images), ("test", data.test_images))})
        _, wall, cpu = _timed(lambda: insights.compute(cfg, data, feats, mean, std, device, None))
        print(f"resnet18, {stem} stem, {args.device}: insights {wall:.2f} s wall ({cpu:.2f} s CPU); one evaluation "
              f"feature pass ({len(data.train_labels)} + {len(data.test_labels)} images) {pass_wall:.2f} s wall "
              f"({pass_cpu:.2f} s CPU); ratio {wall / pass_wall:.2f}")
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
