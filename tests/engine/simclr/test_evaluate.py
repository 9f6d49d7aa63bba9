from __future__ import annotations

import pytest
import torch

from engine.simclr.evaluate import knn_top1, linear_eval


def clustered(n_per_class: int, classes: int, dim: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centers[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_knn_separates_clusters_and_is_chance_on_noise() -> None:
    xtr, ytr = clustered(50, 5, 16, 0.5, 0)
    xte, yte = clustered(20, 5, 16, 0.5, 1)
    assert knn_top1(xtr, ytr, xte, yte, k=20, temperature=0.1) == 1.0
    noise = torch.randn_like(xte)
    assert knn_top1(xtr, ytr, noise, yte, k=20, temperature=0.1) < 0.5


def test_knn_k_larger_than_the_bank_is_clamped() -> None:
    xtr, ytr = clustered(2, 3, 4, 0.1, 0)
    assert knn_top1(xtr, ytr, xtr, ytr, k=200) == 1.0


def test_linear_eval_learns_linear_structure() -> None:
    xtr, ytr = clustered(100, 4, 32, 2.0, 0)
    xte, yte = clustered(50, 4, 32, 2.0, 1)
    loss, top1 = linear_eval(xtr, ytr, xte, yte)
    assert top1 > 0.9 and loss < 0.4
    loss_rand, top1_rand = linear_eval(torch.randn_like(xtr), ytr, torch.randn_like(xte), yte)
    assert top1_rand < 0.5 and loss_rand > loss


def test_linear_eval_is_deterministic() -> None:
    xtr, ytr = clustered(30, 3, 8, 1.5, 0)
    xte, yte = clustered(10, 3, 8, 1.5, 1)
    assert linear_eval(xtr, ytr, xte, yte) == pytest.approx(linear_eval(xtr, ytr, xte, yte))


@pytest.mark.cuda
def test_knn_on_cuda_matches_the_cpu() -> None:
    xtr, ytr = clustered(200, 10, 64, 3.0, 0)
    xte, yte = clustered(50, 10, 64, 3.0, 1)
    cpu = knn_top1(xtr, ytr, xte, yte, k=20, chunk=128)
    assert 0.2 < cpu < 1.0  # not a trivial case
    assert knn_top1(xtr.cuda(), ytr, xte.cuda(), yte, k=20, chunk=128) == pytest.approx(cpu, abs=1 / len(xte))
