from __future__ import annotations

import pytest
import torch
from torch import nn

from db.config import RunConfig
from engine.simclr.optim import LARS, build_optimizer, build_scheduler, split_decay_groups, warmup_cosine


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_batchnorm_and_bias_are_excluded_from_decay_and_adaptation() -> None:
    net = small_net()
    decay, exclude = split_decay_groups(net, 1e-6)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert {id(p) for p in exclude["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias), id(net[3].bias)}
    assert exclude["weight_decay"] == 0 and exclude["lars_exclude"]


def test_trust_ratio_step_matches_the_formula() -> None:
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
               lr=0.5, momentum=0.9, weight_decay=0.1, trust_coefficient=0.001)
    w.grad = torch.tensor([0.0, 1.0])
    b.grad = torch.tensor([2.0])
    opt.step()
    g = torch.tensor([0.0, 1.0]) + 0.1 * torch.tensor([3.0, 4.0])
    trust = 0.001 * 5.0 / g.norm()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - 0.5 * trust * g, atol=1e-7)
    # Excluded: plain momentum SGD, no decay, no trust ratio.
    assert b.item() == pytest.approx(1.0 - 0.5 * 2.0)


def test_zero_weight_norm_uses_trust_one() -> None:
    w = nn.Parameter(torch.zeros(3))
    opt = LARS([w], lr=0.1, weight_decay=0.0)
    w.grad = torch.ones(3)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), -0.1))


def test_lars_trains_a_small_problem() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    net = small_net()
    opt = build_optimizer(RunConfig(optimizer="lars", lr=5.0, batch_size=256, dataset="synthetic"), net)
    first = None
    for _ in range(100):
        loss = nn.functional.cross_entropy(net(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("name,cls", [("lars", LARS), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_build_optimizer(name: str, cls: type) -> None:
    opt = build_optimizer(RunConfig(optimizer=name, batch_size=128), small_net())
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-4 if name == "adam" else 0.3 * 128 / 256)
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_warmup_then_cosine() -> None:
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)
    values = [warmup_cosine(s, 10, 100) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_scheduler_uses_epochs_and_warmup() -> None:
    cfg = RunConfig(epochs=10, warmup_epochs=2, batch_size=64, lr=1.0)
    opt = build_optimizer(cfg, small_net())
    sched = build_scheduler(cfg, opt, steps_per_epoch=5)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[-1] < 0.01
