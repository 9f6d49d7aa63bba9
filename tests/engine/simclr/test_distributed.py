"""Data-parallel training on the CPU: two gloo processes must train exactly what one process does.

The processes are forked with torch.multiprocessing (no re-import of torch: seconds saved on a
busy machine; each sets one thread, as DataLoader workers do) and run a tiny model with BatchNorm
in eval mode (torch's SyncBatchNorm needs GPUs). Deterministic inputs; the one-process reference
is computed in the test process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from db.config import RunConfig
from engine.simclr.distributed import DataParallel, sharded_nt_xent
from engine.simclr.loss import nt_xent
from engine.simclr.trainer import _batches

BATCH, TEMPERATURE, WORLD = 8, 0.5, 2


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 6))
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)  # not the identity: the eval-mode BatchNorm does something
    bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 6, 6, generator=g), torch.randn(BATCH, 3, 6, 6, generator=g)


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


class _LocalSliceGather(torch.autograd.Function):
    """The pitfall: a gather whose backward returns only this process's slice of its own gradient."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001, ANN205
        return grads[dist.get_rank()]


def _process(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        dp = DataParallel(rank=rank, world=WORLD, device=torch.device("cpu"), sync_batchnorm=False,
                          control=dist.group.WORLD)
        v1, v2 = views()
        share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        result = {}
        for name, gather in (("summed", None), ("local_slice", lambda x: list(_LocalSliceGather.apply(x)))):
            model = tiny_model()
            ddp = dp.wrap(model)
            z = ddp(torch.cat([v1[share], v2[share]]))
            half = len(z) // 2
            loss = dp.nt_xent(z[:half], z[half:], TEMPERATURE) if gather is None else \
                sharded_nt_xent(z[:half], z[half:], TEMPERATURE, rank, gather)
            loss.backward()  # DDP averages the parameter gradients over the processes here
            result[name] = {"loss": dp.mean(loss), "grads": grads(model)}
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_process, args=(free_port(), str(out)), nprocs=WORLD, join=True, start_method="fork")
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    model = tiny_model()
    v1, v2 = views()
    z = model(torch.cat([v1, v2]))
    loss = nt_xent(z[:BATCH], z[BATCH:], TEMPERATURE)
    loss.backward()
    return {"loss": loss.detach(), "grads": grads(model)}


def test_two_gloo_processes_give_the_loss_and_gradients_of_one_process(two_processes: list[dict],
                                                                         one_process: dict) -> None:
    for rank, result in enumerate(two_processes):
        got = result["summed"]
        torch.testing.assert_close(got["loss"], one_process["loss"], atol=1e-5, rtol=0)
        assert got["grads"].keys() == one_process["grads"].keys()
        for name, expected in one_process["grads"].items():
            assert expected.abs().max() > 1e-4, f"{name}: the reference gradient must not be ~0"
            torch.testing.assert_close(got["grads"][name], expected, atol=1e-5, rtol=0,
                                       msg=lambda m: f"rank {rank}, {name}: {m}")


def test_a_gather_returning_only_the_local_gradient_slice_trains_a_different_loss(
        two_processes: list[dict], one_process: dict) -> None:
    # The same forward (so the same loss value), but the other process's terms are missing from
    # the gradient: the check above would catch this mistake.
    wrong = two_processes[0]["local_slice"]
    torch.testing.assert_close(wrong["loss"], one_process["loss"], atol=1e-5, rtol=0)
    worst = max((wrong["grads"][n] - g).abs().max().item() for n, g in one_process["grads"].items())
    assert worst > 1e-3


def test_the_processes_shares_make_up_the_one_process_batch() -> None:
    cfg = RunConfig(dataset="synthetic", batch_size=6, subset_size=24, epochs=1)
    images = torch.arange(24, dtype=torch.uint8).view(24, 1, 1, 1)

    def epoch(rank: int, world: int) -> list[torch.Tensor]:
        shuffle = torch.Generator().manual_seed(3)
        return list(_batches(cfg, None, images, 4, shuffle, torch.device("cpu"), lambda x, _g: x, None,  # type: ignore[arg-type]
                             rank, world))

    whole = epoch(0, 1)
    shares = [epoch(r, 3) for r in range(3)]
    for step, batch in enumerate(whole):
        first_views = torch.cat([s[step][:2] for s in shares])
        assert torch.equal(first_views, batch[:6])  # the same images, split in rank order
        assert all(torch.equal(s[step][:2], s[step][2:]) for s in shares)  # each share: both views of its images
    assert sorted(torch.cat([b[:6] for b in whole]).flatten().tolist()) == list(range(24))


def test_data_parallel_config_is_checked() -> None:
    from db.config import ConfigError

    with pytest.raises(ConfigError, match="batch_size: must be a multiple of devices \\(3\\)"):
        RunConfig(batch_size=256, devices=3)
    with pytest.raises(ConfigError, match="device: must be auto, cuda or cpu when devices > 1"):
        RunConfig(batch_size=256, devices=2, device="cuda:1")
    with pytest.raises(ConfigError, match="sync_batchnorm: on needs GPUs"):
        RunConfig(batch_size=256, devices=2, device="cpu", sync_batchnorm="on")
    with pytest.raises(ConfigError, match="devices: must be >= 1"):
        RunConfig(devices=0)
    assert RunConfig(batch_size=256, devices=4).devices == 4
    assert RunConfig().devices == 1 and RunConfig().sync_batchnorm == "auto"


def test_a_multi_device_run_started_as_one_process_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.simclr.distributed import join

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="start it as 2 processes with torchrun"):
        join(RunConfig(batch_size=256, devices=2), torch.device("cpu"))
