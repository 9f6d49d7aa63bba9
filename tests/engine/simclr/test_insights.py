"""insights.npz: nearest neighbours for trained and untrained encoders, and the 2-D map."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.simclr import insights
from engine.simclr.data import load_dataset
from engine.simclr.evaluate import extract_features
from engine.simclr.model import build_model
from tests.conftest import tiny_config


def test_compute_finds_the_true_neighbours_and_uses_the_runs_initial_weights(tmp_path) -> None:  # noqa: ANN001
    cfg = tiny_config(seed=5)
    data = load_dataset(cfg)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(0)
    feats = {"train": torch.randn(len(data.train_labels), 32, generator=gen),
             "test": torch.randn(len(data.test_labels), 32, generator=gen)}
    out = insights.compute(cfg, data, feats, mean, std, torch.device("cpu"), None, k=4, bank_size=40)

    q, bank = out["query_index"], out["bank_index"]
    n_classes = len(data.classes)
    assert len(q) == min(n_classes, insights.MAX_QUERIES) and len(bank) == 40
    assert sorted(out["query_label"].tolist()) == sorted(set(data.test_labels[q].tolist()))  # one per class
    # Brute force over the bank, trained features: the same 4 neighbours, most similar first.
    sims = F.normalize(feats["test"][q], dim=1) @ F.normalize(feats["train"][bank], dim=1).T
    assert (out["trained_index"] == bank[sims.topk(4, dim=1).indices.numpy()]).all()
    assert np.all(np.diff(out["trained_similarity"], axis=1) <= 1e-6)
    assert (out["trained_label"] == data.train_labels[out["trained_index"]].numpy()).all()
    # Thumbnails are the very images, HWC uint8.
    assert out["trained_images"].shape == (len(q), 4, 16, 16, 3) and out["trained_images"].dtype == np.uint8
    first = data.train_images[int(out["trained_index"][0, 0])].permute(1, 2, 0).numpy()
    assert (out["trained_images"][0, 0] == first).all()
    # The untrained encoder is the run's starting point: seed, then build_model (as train() does).
    torch.manual_seed(cfg.seed)
    start = build_model(cfg).encoder
    f0 = extract_features(start, data.train_images[torch.from_numpy(bank)], mean, std, device=torch.device("cpu"))
    f0q = extract_features(start, data.test_images[torch.from_numpy(q)], mean, std, device=torch.device("cpu"))
    ref = (F.normalize(f0q, dim=1) @ F.normalize(f0, dim=1).T).topk(4, dim=1).indices.numpy()
    assert (out["untrained_index"] == bank[ref]).all()
    # The map: every test point (fewer than MAP_POINTS here), 2-D, variance shares in (0, 1].
    assert out["map_xy"].shape == (len(data.test_labels), 2)
    assert 0 < out["map_explained"][1] <= out["map_explained"][0] <= 1
    path = insights.save(tmp_path, out)
    assert set(np.load(path).files) == set(out)


def test_pca_2d_recovers_the_main_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 1, generator=gen) * torch.tensor([[10.0, 0, 0]]) + torch.randn(500, 3, generator=gen) * 0.1
    xy, explained = insights.pca_2d(x)
    assert explained[0] > 0.99 and abs(np.corrcoef(xy[:, 0], x[:, 0].numpy())[0, 1]) > 0.999
