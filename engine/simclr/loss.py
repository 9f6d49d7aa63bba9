"""NT-Xent, the normalized temperature-scaled cross entropy of SimCLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean NT-Xent over the 2N views; z1[i] and z2[i] are the two views of image i.

    Each view's positive is its partner; the other 2N-2 views are negatives. Written as one
    cross-entropy over the cosine-similarity matrix with the diagonal (a view with itself) masked.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    # Made on z's device: a host-made tensor would be a blocking copy to the GPU every step.
    targets = torch.arange(n, 3 * n, device=z.device) % (2 * n)
    return F.cross_entropy(logits, targets)


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The same loss written as the paper's double loop: slow, for tests only."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n2):
        j = (i + n) % n2
        sims = [torch.exp(z[i] @ z[k] / temperature) for k in range(n2) if k != i]
        total = total - torch.log(torch.exp(z[i] @ z[j] / temperature) / torch.stack(sims).sum())
    return total / n2
