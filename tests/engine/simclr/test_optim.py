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


def scheduled_lrs(cfg: RunConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every step of the run, as the trainer's optimizer and scheduler set it."""
    opt = build_optimizer(cfg, small_net())
    sched = build_scheduler(cfg, opt, steps_per_epoch=steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_scheduler_uses_epochs_and_warmup() -> None:
    lrs = scheduled_lrs(RunConfig(epochs=10, warmup_epochs=2, batch_size=64, lr=1.0), steps_per_epoch=5)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[-1] < 0.01


# ------------------------------------------------------------------ the seed's and solo-learn's settings
def test_lars_exclude_none_puts_every_parameter_under_decay_and_adaptation() -> None:
    net = small_net()
    opt = build_optimizer(RunConfig(optimizer="lars", lars_exclude="none", batch_size=64), net)
    adapted = [p for g in opt.param_groups if not g["lars_exclude"] for p in g["params"]]
    assert len(adapted) == len(list(net.parameters()))
    # Adam and SGD keep sparing BatchNorm and biases: lars_exclude is LARS's setting.
    sgd = build_optimizer(RunConfig(optimizer="sgd", lars_exclude="none", batch_size=64), net)
    assert sgd.param_groups[1]["weight_decay"] == 0.0 and len(sgd.param_groups[1]["params"]) == 4


def test_freeze_zero_norm_keeps_a_zero_tensor_at_zero_as_the_seed_does() -> None:
    w = nn.Parameter(torch.zeros(3))
    opt = LARS([w], lr=0.1, weight_decay=1e-6, freeze_zero_norm=True)
    w.grad = torch.ones(3)
    opt.step()
    assert not w.detach().any()  # trust ratio 0 x |0| / |g| = 0: a zero-initialized bias never moves


def test_trust_coefficient_and_clip_lr() -> None:
    def step(**kw: object) -> torch.Tensor:
        w = nn.Parameter(torch.tensor([3.0, 4.0]))
        opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.0, **kw)  # type: ignore[arg-type]
        w.grad = torch.tensor([0.0, 0.01])
        opt.step()
        return torch.tensor([3.0, 4.0]) - w.detach()

    g = torch.tensor([0.0, 0.01])
    trust = 0.02 * 5.0 / 0.01  # = 10: without clipping the step is lr x 10 x g
    assert torch.allclose(step(trust_coefficient=0.02), 0.5 * trust * g, atol=1e-6)
    # solo-learn's clip_lr: the tensor's rate lr x trust' is min(trust, lr) = 0.5, i.e. the plain SGD step
    assert torch.allclose(step(trust_coefficient=0.02, clip_lr=True), 0.5 * g, atol=1e-6)


def test_cosine_per_epoch_is_constant_within_an_epoch_without_warmup() -> None:
    cfg = RunConfig(epochs=4, batch_size=64, lr=1.0, schedule="cosine_per_epoch")
    assert cfg.effective_warmup_epochs == 0.0
    lrs = scheduled_lrs(cfg, steps_per_epoch=3)
    # torch's CosineAnnealingLR(T_max=4) stepped per epoch: 1, 0.854, 0.5, 0.146
    expected = [1.0, 0.8535534, 0.5, 0.1464466]
    assert lrs == pytest.approx([v for v in expected for _ in range(3)], abs=1e-6)


def test_constant_schedule_keeps_the_rate() -> None:
    cfg = RunConfig(epochs=3, batch_size=64, optimizer="adam", lr=3e-4, weight_decay=0.0, schedule="constant")
    assert scheduled_lrs(cfg, steps_per_epoch=2) == pytest.approx([3e-4] * 6)


def test_base_lr_scales_with_the_batch() -> None:
    assert RunConfig(base_lr=0.4, batch_size=512).effective_lr == pytest.approx(0.8)
    assert RunConfig(batch_size=512).effective_lr == pytest.approx(0.6)  # the 0.3 x B/256 rule
