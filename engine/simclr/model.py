"""Encoder (torchvision ResNet, classifier removed) and SimCLR's MLP projection head."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from db.config import RunConfig


def build_encoder(encoder: str, stem: str) -> tuple[nn.Module, int]:
    """A ResNet without its classifier; returns (module, feature dimension).

    The "cifar" stem swaps the 7x7 stride-2 conv and max-pool for a 3x3 stride-1 conv: at 32x32
    the ImageNet stem shrinks the image to 8x8 before the first block, which costs a lot of
    accuracy (and saves ~15x compute). No pretrained weights: SimCLR learns from scratch.
    """
    net = getattr(torchvision.models, encoder)(weights=None)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


class SimCLRModel(nn.Module):
    """encoder -> h (the representation evaluated later) -> projection head -> z (fed to NT-Xent)."""

    def __init__(self, encoder: str, stem: str, projection_dim: int, hidden_dim: int | None = None):
        super().__init__()
        self.encoder, self.feature_dim = build_encoder(encoder, stem)
        hidden = hidden_dim or self.feature_dim
        # Two-layer MLP as in the SimCLR paper and the seed's code (no biases). solo-learn's head
        # has biases; with its 2048 -> 256 sizes (projection_hidden_dim, projection_dim) that is
        # the one difference left.
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, projection_dim, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))


def build_model(cfg: RunConfig) -> SimCLRModel:
    return SimCLRModel(cfg.encoder, cfg.stem, cfg.projection_dim, cfg.projection_hidden_dim)
