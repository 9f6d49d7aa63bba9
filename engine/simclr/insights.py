"""What the encoder learned, computed once at the end of a run and stored in insights.npz.

(a) Nearest neighbours: for one test image per class (up to MAX_QUERIES), its k most similar
training images by cosine similarity of the encoder's features, for the trained encoder and for
the untrained one (random init from the same seed, i.e. the weights this run started from).
Both search the same bank: a seeded sample of BANK_SIZE training images, because the untrained
encoder's features have to be computed here and all of the training set would cost as much as a
whole kNN evaluation. (b) A 2-D map of the trained encoder's test features: their first two
principal components (torch.pca_lowrank), coloured by class in the dashboard.

The file holds plain numpy arrays, the image thumbnails included, so the dashboard draws it
without torch or the data set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from db.config import INSIGHTS_FILE, RunConfig
from engine.simclr.data import ImageData
from engine.simclr.evaluate import extract_features
from engine.simclr.model import build_model

K = 8
MAX_QUERIES = 10
BANK_SIZE = 500
MAP_POINTS = 2000


def pick_queries(labels: torch.Tensor, gen: torch.Generator, max_queries: int = MAX_QUERIES) -> torch.Tensor:
    """One random test image per class, for the first `max_queries` classes in a seeded order."""
    classes = labels.unique()
    classes = classes[torch.randperm(len(classes), generator=gen)][:max_queries].sort().values
    return torch.stack([torch.nonzero(labels == c).flatten()[
        torch.randint(int((labels == c).sum()), (1,), generator=gen)][0] for c in classes])


def neighbours(bank: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices into bank, cosine similarities), each [Q, k], most similar first."""
    sims = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T
    top = sims.topk(min(k, len(bank)), dim=1)
    return top.indices.cpu(), top.values.cpu()


def pca_2d(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The rows of x on their first two principal components, and the share of variance each explains."""
    x = x.float().cpu()
    centred = x - x.mean(0, keepdim=True)
    _, s, v = torch.pca_lowrank(centred, q=2, center=False, niter=4)
    total = centred.square().sum().clamp_min(1e-12)
    return (centred @ v[:, :2]).numpy(), (s[:2].square() / total).numpy()


def _hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def compute(cfg: RunConfig, data: ImageData, features: dict[str, torch.Tensor], mean: torch.Tensor,
            std: torch.Tensor, device: torch.device, amp: torch.dtype | None, *, k: int = K,
            bank_size: int = BANK_SIZE) -> dict[str, np.ndarray]:
    """The arrays of insights.npz, from the final features of the trained encoder (`features`)."""
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    queries = pick_queries(data.test_labels.cpu(), gen)
    bank = torch.randperm(len(data.train_labels), generator=gen)[:bank_size].sort().values
    with torch.random.fork_rng(devices=[]):  # leave the run's RNG streams as they were
        torch.manual_seed(cfg.seed)  # the same seed build_model saw at the start: the run's initial weights
        untrained = build_model(cfg).encoder.to(device)
    untrained_feats = {
        split: extract_features(untrained, imgs[idx.to(imgs.device)], mean, std, device=device, autocast_dtype=amp)
        for split, imgs, idx in (("train", data.train_images, bank), ("test", data.test_images, queries))}
    out: dict[str, np.ndarray] = {
        "query_index": queries.numpy(), "query_label": data.test_labels.cpu()[queries].numpy(),
        "query_images": _hwc(data.test_images[queries.to(data.test_images.device)]),
        "bank_index": bank.numpy(), "classes": np.array(data.classes, dtype=str), "k": np.array(k),
    }
    bank_labels = data.train_labels.cpu()[bank]
    for name, bank_feats, query_feats in (
            ("trained", features["train"][bank.to(features["train"].device)],
             features["test"][queries.to(features["test"].device)]),
            ("untrained", untrained_feats["train"], untrained_feats["test"])):
        idx, sims = neighbours(bank_feats, query_feats, k)
        out[f"{name}_index"] = bank[idx].numpy()  # indices into the training split
        out[f"{name}_similarity"] = sims.numpy()
        out[f"{name}_label"] = bank_labels[idx].numpy()
        out[f"{name}_images"] = _hwc(data.train_images[bank[idx].flatten().to(data.train_images.device)]).reshape(
            len(queries), idx.shape[1], *out["query_images"].shape[1:])
    test = features["test"]
    chosen = torch.randperm(len(test), generator=gen)[:MAP_POINTS].sort().values
    out["map_xy"], out["map_explained"] = pca_2d(test[chosen.to(test.device)])
    out["map_index"] = chosen.numpy()
    out["map_label"] = data.test_labels.cpu()[chosen].numpy()
    return out


def save(run_dir: Path, arrays: dict[str, np.ndarray]) -> Path:
    path = run_dir / INSIGHTS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path
