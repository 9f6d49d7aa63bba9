from __future__ import annotations

import pytest
import torch

from engine.simclr.evaluate import _zero_linear, baseline_code_probe, informative_columns, knn_top1, linear_eval


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


# ------------------------------------------------------------------ probe robustness (probe=lbfgs)
def _separable_with_a_column_constant_on_train() -> tuple[torch.Tensor, ...]:
    xtr, ytr = clustered(50, 4, 8, 0.3, 0)
    xte, yte = clustered(20, 4, 8, 0.3, 1)
    # One more column: constant on the train features, large and varying on the test features.
    xtr = torch.cat([xtr, torch.full((len(xtr), 1), 2.0)], 1)
    xte = torch.cat([xte, 2.0 + 50 * torch.randn(len(xte), 1, generator=torch.Generator().manual_seed(3))], 1)
    return xtr, ytr, xte, yte


def test_a_column_constant_on_train_features_does_not_wreck_the_probe() -> None:
    xtr, ytr, xte, yte = _separable_with_a_column_constant_on_train()
    assert linear_eval(xtr[:, :-1], ytr, xte[:, :-1], yte)[1] == 1.0  # without the column
    _, acc = linear_eval(xtr, ytr, xte, yte)
    assert acc == 1.0  # before the fix: std + 1e-6 made it ~1e7 on test, accuracy 0.2-0.3


def test_constant_columns_are_dropped_and_the_rest_kept() -> None:
    xtr, _, _, _ = _separable_with_a_column_constant_on_train()
    keep, _, _ = informative_columns(xtr)
    assert keep.tolist() == [True] * 8 + [False]


def test_the_classifier_starts_at_zero() -> None:
    clf = _zero_linear(5, 3, torch.device("cpu"))
    assert not clf.weight.any() and not clf.bias.any()


def test_linear_eval_neither_reseeds_nor_depends_on_the_global_rng() -> None:
    xtr, ytr = clustered(30, 3, 6, 1.5, 0)
    xte, yte = clustered(10, 3, 6, 1.5, 1)
    torch.manual_seed(123)
    first = linear_eval(xtr, ytr, xte, yte)
    after = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    assert torch.equal(after, expected)  # the global RNG went on as if the probe never ran
    torch.manual_seed(456)
    assert linear_eval(xtr, ytr, xte, yte) == first  # and another global seed changes nothing


# ------------------------------------------------------------------ the seed's probe (probe=seed)
def test_baseline_code_probe_learns_and_reports_means_over_whole_test_batches() -> None:
    xtr, ytr = clustered(150, 4, 128, 0.5, 0)  # 600 train features: 2 whole batches of 256
    xte, yte = clustered(75, 4, 128, 0.5, 1)  # 300 test features: one whole batch, 44 dropped
    loss, acc = baseline_code_probe(xtr, ytr, xte, yte, epochs=50)  # 100 Adam steps at 3e-4
    assert acc == 1.0 and loss < 0.5
    assert baseline_code_probe(xtr, ytr, xte, yte, epochs=1)[1] < 0.9  # it was the training that did it


def test_baseline_code_probe_scores_one_whole_batch_drawn_from_every_class() -> None:
    """Stored by class (as cifar10-mini and image folders are), the test set's tail is one class.
    The probe scores whole batches only (drop_last: 256 of 300 here), as the seed's does, but drawn
    in a seeded random order: the tail class is scored too, not dropped whole."""
    xtr, ytr = clustered(150, 4, 128, 0.5, 0)
    xte, yte = clustered(75, 4, 128, 0.5, 1)
    by_class = torch.argsort(yte, stable=True)
    xte, yte = xte[by_class], yte[by_class]  # the last 75 are all class 3
    spoiled = xte.clone()
    spoiled[256:] = -spoiled[256:] * 10  # the 44 that drop_last would drop in stored order
    _, acc = baseline_code_probe(xtr, ytr, spoiled, yte, epochs=50)
    wrong = round((1 - acc) * 256)
    assert abs((1 - acc) * 256 - wrong) < 1e-4  # a mean over one whole batch of 256, not over 300
    assert 0 < wrong <= 44  # some of the tail was scored (in stored order none would be)


def test_baseline_code_probe_uses_raw_features_and_its_own_generator() -> None:
    xtr, ytr = clustered(100, 2, 4, 0.5, 0)
    xte, yte = clustered(50, 2, 4, 0.5, 1)
    torch.manual_seed(1)
    a = baseline_code_probe(xtr, ytr, xte, yte, epochs=3, seed=7)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    assert baseline_code_probe(xtr, ytr, xte, yte, epochs=3, seed=7) == a  # the global RNG plays no part
    assert baseline_code_probe(xtr, ytr, xte, yte, epochs=3, seed=8) != a  # the run's seed does
    torch.set_rng_state(state)
    # Raw features: scaling them changes what Adam at a fixed lr learns in 3 epochs.
    assert baseline_code_probe(xtr * 100, ytr, xte * 100, yte, epochs=3, seed=7) != a


def test_baseline_code_probe_uses_a_split_smaller_than_a_batch_whole() -> None:
    xtr, ytr = clustered(25, 4, 128, 0.3, 0)  # 100 < 256
    xte, yte = clustered(10, 4, 128, 0.3, 1)
    loss, acc = baseline_code_probe(xtr, ytr, xte, yte, epochs=100)  # 100 steps of one batch of 100
    assert acc == 1.0 and 0 < loss < 0.5


@pytest.mark.cuda
def test_knn_on_cuda_matches_the_cpu() -> None:
    xtr, ytr = clustered(200, 10, 64, 3.0, 0)
    xte, yte = clustered(50, 10, 64, 3.0, 1)
    cpu = knn_top1(xtr, ytr, xte, yte, k=20, chunk=128)
    assert 0.2 < cpu < 1.0  # not a trivial case
    assert knn_top1(xtr.cuda(), ytr, xte.cuda(), yte, k=20, chunk=128) == pytest.approx(cpu, abs=1 / len(xte))
