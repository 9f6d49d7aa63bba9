from __future__ import annotations

import math

import pytest
import torch

from engine.simclr.loss import nt_xent, nt_xent_loop


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_vectorized_equals_the_loop(batch: int, temperature: float) -> None:
    g = torch.Generator().manual_seed(batch)
    z1, z2 = torch.randn(batch, 8, generator=g), torch.randn(batch, 8, generator=g)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(nt_xent_loop(z1, z2, temperature).item(), abs=1e-5)


def test_identical_views_far_from_others_give_a_low_loss() -> None:
    z = torch.eye(4) * 10
    perfect = nt_xent(z, z, 0.5).item()
    shuffled = nt_xent(z, z[[1, 2, 3, 0]], 0.5).item()
    assert perfect < shuffled
    # With orthogonal unit vectors the value is known in closed form.
    expected = -math.log(math.exp(2) / (math.exp(2) + 6 * math.exp(0)))
    assert perfect == pytest.approx(expected, abs=1e-5)


def test_gradients_flow_to_both_views() -> None:
    z1, z2 = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    nt_xent(z1, z2, 0.5).backward()
    assert z1.grad is not None and z2.grad is not None and z1.grad.abs().sum() > 0


def test_split_over_processes_the_shares_average_to_the_whole_batch_loss() -> None:
    g = torch.Generator().manual_seed(7)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    shares = [nt_xent(z1[r * 2:(r + 1) * 2], z2[r * 2:(r + 1) * 2], 0.5, keys=(z1, z2), offset=r * 2)
              for r in range(4)]
    assert torch.stack(shares).mean().item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), abs=1e-6)
    assert len({round(s.item(), 6) for s in shares}) == 4  # the shares differ: each is its own anchors' loss
