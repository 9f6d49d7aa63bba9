"""What a run leaves for people besides its resumable checkpoint: small JSON sidecars that say
what a file is (read by the dashboard, which never imports torch), and the encoder alone.

encoder.pt is a plain state dict of the torchvision ResNet backbone (conv1, bn1, layer1..4; no
fc, no projection head), float32 on the CPU, so it loads into `torchvision.models.resnet18()`
(or resnet50) once the stem is set as the run's and `fc` is replaced by `nn.Identity()`; see
ENCODER_SNIPPET.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from torch import nn

from db.config import CHECKPOINT_INFO_FILE, ENCODER_FILE, ENCODER_INFO_FILE, RunConfig
from engine.simclr.checkpoint import save_checkpoint


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, like checkpoints: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_checkpoint_info(run_dir: Path, *, epoch: int, step: int) -> None:
    write_json(run_dir / CHECKPOINT_INFO_FILE, {"epoch": epoch, "step": step, "saved_at": time.time()})


def save_encoder(run_dir: Path, encoder: nn.Module, cfg: RunConfig, *, feature_dim: int, epoch: int, step: int,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> Path:
    """Write encoder.pt (the backbone's state dict) and encoder.json (how to use it)."""
    state = {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
             for k, v in encoder.state_dict().items()}
    path = run_dir / ENCODER_FILE
    save_checkpoint(path, state)
    write_json(run_dir / ENCODER_INFO_FILE, {
        "encoder": cfg.encoder, "stem": cfg.stem, "feature_dim": feature_dim, "image_size": cfg.image_size,
        "mean": list(mean), "std": list(std), "epoch": epoch, "step": step, "saved_at": time.time(),
        "dataset": cfg.dataset,
    })
    return path
