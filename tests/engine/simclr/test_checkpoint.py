from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from engine.simclr import checkpoint
from engine.simclr.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "step": 12, "config": {"a": 1, "b": None},
             "rng": torch.get_rng_state()}
    save_checkpoint(path, state)
    got = load_checkpoint(path)
    assert got["epoch"] == 3 and torch.equal(got["model"]["w"], torch.arange(4.0)) and got["config"] == {"a": 1, "b": None}
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp files left


def test_full_disk_mid_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})

    def full_disk(obj: object, f: object) -> None:
        f.write(b"partial bytes")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": Path("/")}, path)  # an arbitrary object, not plain data
    with pytest.raises(Exception):
        load_checkpoint(path)
