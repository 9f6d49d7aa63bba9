"""NT-Xent, the normalized temperature-scaled cross entropy of SimCLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, *,
            keys: tuple[torch.Tensor, torch.Tensor] | None = None, offset: int = 0) -> torch.Tensor:
    """Mean NT-Xent over the 2N views; z1[i] and z2[i] are the two views of image i.

    Each view's positive is its partner; the other 2N-2 views are negatives. Written as one
    cross-entropy over the cosine-similarity matrix with each view's similarity to itself masked.

    With the batch split over processes, `keys` are the first and second views of the whole
    global batch (of G images) and z1, z2 are its rows offset..offset+N: the local views are the
    anchors, all 2G views the candidates, and the result is the mean over the local anchors only.
    """
    n = z1.shape[0]
    anchors = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    candidates = anchors if keys is None else F.normalize(torch.cat(keys).float(), dim=1)
    total = n if keys is None else keys[0].shape[0]
    logits = anchors @ candidates.T / temperature
    local = torch.arange(offset, offset + n, device=anchors.device)
    itself = torch.cat([local, local + total])  # each anchor's own column
    logits[torch.arange(2 * n, device=anchors.device), itself] = float("-inf")
    partner = torch.cat([local + total, local])
    return F.cross_entropy(logits, partner)


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
