"""The run's files on its page: which checkpoint is on disk, and the trained encoder alone.

The dashboard never imports torch: the run's process wrote encoder.pt and the JSON sidecars that
describe it (engine/simclr/artifacts.py); here they are only stat-ed, read and served, and only
from inside the runs folder (dashboard/files.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard.common import fmt_time, prepared_download
from dashboard.files import run_file, under_runs
from db.config import CHECKPOINT_INFO_FILE, ENCODER_FILE, ENCODER_INFO_FILE


def _json(run_id: int, name: str) -> dict[str, Any]:
    path = run_file(run_id, name)
    try:
        return json.loads(path.read_text()) if path else {}
    except (OSError, ValueError):
        return {}  # being replaced this very moment, or damaged: show what the file itself tells


def file_line(path: Path, info: dict[str, Any]) -> str:
    """"epoch 3, step 120 · 45.2 MB · saved 2026-11-30 01:02:03"."""
    stat = path.stat()
    parts = []
    if "epoch" in info:
        parts.append(f"epoch {info['epoch']}, step {info['step']}")
    parts.append(f"{stat.st_size / 1e6:.1f} MB")
    parts.append(f"saved {fmt_time(datetime.fromtimestamp(info.get('saved_at', stat.st_mtime)))}")
    return " · ".join(parts)


def snippet(info: dict[str, Any], file_name: str) -> str:
    """Python that loads encoder.pt into torchvision's ResNet, with the run's stem and normalization."""
    encoder = info.get("encoder", "resnet18")
    stem = ("net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)  # the run's cifar stem\n"
            "net.maxpool = nn.Identity()\n") if info.get("stem") == "cifar" else ""
    mean, std = info.get("mean", [0.5] * 3), info.get("std", [0.25] * 3)
    fmt = lambda v: ", ".join(f"{x:.4f}" for x in v)  # noqa: E731
    return (
        "import torch, torchvision\nfrom torch import nn\n\n"
        f"net = torchvision.models.{encoder}()\n{stem}"
        "net.fc = nn.Identity()  # the encoder has no classifier: net(x) returns the features\n"
        f"net.load_state_dict(torch.load({file_name!r}, weights_only=True))\n"
        "net.eval()\n\n"
        f"# images: float [N, 3, {info.get('image_size', 32)}, {info.get('image_size', 32)}] in [0, 1], "
        "normalized as in training\n"
        f"mean = torch.tensor([{fmt(mean)}]).view(1, 3, 1, 1)\n"
        f"std = torch.tensor([{fmt(std)}]).view(1, 3, 1, 1)\n"
        f"features = net((images - mean) / std)  # [N, {info.get('feature_dim', 512)}]\n"
    )


def checkpoint_section(run: dict[str, Any]) -> None:
    run_id = run["id"]
    st.subheader("Files")
    ckpt = under_runs(run.get("checkpoint_path"))
    c1, c2 = st.columns(2)
    if ckpt:
        # A completed run's checkpoint was slimmed to its weights (engine/simclr/trainer.py), unless
        # its worker ran with SIMCLR_KEEP_OPTIMIZER_STATE=1.
        what = ("model weights; the optimizer state was dropped on completion unless kept"
                if run["status"] == "completed" else "model, optimizer, scheduler, RNG: to resume")
        c1.markdown(f"**Checkpoint** ({what}): {file_line(ckpt, _json(run_id, CHECKPOINT_INFO_FILE))}")
        # Read when asked, not on every redraw (checkpoints are large); a new epoch's checkpoint is a new file.
        prepared_download("detail_checkpoint", f"checkpoint ({ckpt.stat().st_size / 1e6:.1f} MB)", ckpt.read_bytes,
                          file_name=f"run-{run_id}-checkpoint.pt", mime="application/octet-stream",
                          signature=(str(ckpt), ckpt.stat().st_mtime_ns), where=c1)
    else:
        c1.caption("No checkpoint yet (one is written after every epoch).")
    encoder = run_file(run_id, ENCODER_FILE)
    if not encoder:
        c2.caption("The trained encoder alone (a torchvision state dict) is saved when the run completes."
                   if run["status"] != "completed" else "This run left no encoder.pt (see the end of its log).")
        return
    info = _json(run_id, ENCODER_INFO_FILE)
    name = f"run-{run_id}-encoder.pt"
    c2.markdown(f"**Encoder** ({info.get('encoder', '?')}, {info.get('stem', '?')} stem, final weights): "
                f"{file_line(encoder, info)}")
    prepared_download("detail_encoder", "encoder (torchvision state dict)", encoder.read_bytes, file_name=name,
                      mime="application/octet-stream", signature=(str(encoder), encoder.stat().st_mtime_ns), where=c2)
    with c2.expander("Load it in PyTorch"):
        st.code(snippet(info, name), language="python")
