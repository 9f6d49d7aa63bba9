"""encoder.pt loads into a plain torchvision ResNet, as the run page's snippet says."""

from __future__ import annotations

import json

import torch
import torchvision
from torch import nn

from db.config import ENCODER_FILE, ENCODER_INFO_FILE
from engine.simclr.artifacts import save_encoder
from engine.simclr.model import SimCLRModel
from tests.conftest import tiny_config


def test_encoder_state_dict_loads_into_torchvision_resnet18(tmp_path) -> None:  # noqa: ANN001
    stem = "cifar"  # the imagenet stem is torchvision's own (the trainer test checks its keys)
    torch.manual_seed(0)
    model = SimCLRModel("resnet18", stem, 16).eval()
    save_encoder(tmp_path, model.encoder, tiny_config(stem=stem), feature_dim=model.feature_dim, epoch=3, step=30,
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

    # The README's / run page's recipe, verbatim in spirit: torchvision's resnet18, stem as the run's.
    net = torchvision.models.resnet18()
    if stem == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.load_state_dict(torch.load(tmp_path / ENCODER_FILE, weights_only=True))  # strict: every key matches
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model.encoder(x), atol=1e-5)
    info = json.loads((tmp_path / ENCODER_INFO_FILE).read_text())
    assert info["stem"] == stem and info["feature_dim"] == 512 and (info["epoch"], info["step"]) == (3, 30)
