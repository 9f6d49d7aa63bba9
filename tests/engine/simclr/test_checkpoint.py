from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from engine.simclr import checkpoint
from engine.simclr.checkpoint import CheckpointError, check_owner, load_checkpoint, save_checkpoint


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
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is kept"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": Path("/")}, path)  # an arbitrary object, not plain data
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_torch_full_disk_error_becomes_one_plain_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch reports ENOSPC as "[enforce fail at inline_container.cc:672] ... file write failed"."""
    def full_disk(obj: object, f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    message = str(info.value)
    assert "\n" not in message and "inline_container" not in message
    assert "file write failed" in message and "MB free" in message and "previous checkpoint is kept" in message


def test_garbage_checkpoint_is_one_line_that_never_advises_unsafe_loading(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_a_checkpoint_of_another_run_or_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    mine = {"database_id": "aaa", "run_id": 1}
    state = {"owner": {"database_id": "bbb", "run_id": 1}, "config": {"epochs": 2}}
    with pytest.raises(CheckpointError, match="belongs to run 1 of database bbb"):
        check_owner(state, path, mine, {"epochs": 2})
    with pytest.raises(CheckpointError, match="records no owner"):
        check_owner({"config": {"epochs": 2}}, path, mine, {"epochs": 2})
    with pytest.raises(CheckpointError, match="epochs differ"):
        check_owner({"owner": mine, "config": {"epochs": 3}}, path, mine, {"epochs": 2})
    check_owner({"owner": mine, "config": {"epochs": 2}}, path, mine, {"epochs": 2})
