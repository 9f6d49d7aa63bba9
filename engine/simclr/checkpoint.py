"""Checkpoints written atomically, read as data only, and resumed only by the run that wrote them.

A crash or a full disk mid-write leaves the previous checkpoint intact. Every checkpoint records
its owner (database id and run id) and the run's config; a checkpoint whose owner or config does
not match is refused, so a run never trains on another run's weights (run ids restart at 1 in
every database, and a runs folder can outlive its database).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

OWNER = "owner"  # {"database_id": str, "run_id": int}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read, or used by this run; the message is one line."""


def discard_hint(run_id: int) -> str:
    return f"discard it to start the run over: python -m engine disk --discard {run_id}"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    os.replace is atomic on POSIX, so a reader (or a resumed run) sees either the old file or the
    new one, never half of one. On any failure (e.g. ENOSPC) the temp file is removed and a
    CheckpointError says what happened in words (torch's own message for a full disk is
    "[enforce fail at inline_container.cc:672] ... file write failed"); the old checkpoint is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write the checkpoint {path} ({_write_failure(e, path.parent)}); "
                              "the previous checkpoint is kept") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_failure(exc: BaseException, folder: Path) -> str:
    try:
        free_mb = shutil.disk_usage(folder).free / 1e6
    except OSError:
        free_mb = None
    if isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror
    else:
        # torch's C++ errors end with the useful part: "... failed writing file data/3: file write failed"
        why = str(exc).strip().splitlines()[-1].rsplit(": ", 1)[-1] if str(exc).strip() else type(exc).__name__
    free = f"; {free_mb:.0f} MB free there" if free_mb is not None else ""
    return f"{why}{free}{', the disk is full' if free_mb is not None and free_mb < 100 else ''}"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint as plain data (weights_only: a checkpoint is never code).

    A file that is not a readable checkpoint (truncated, garbage, or holding objects) raises
    CheckpointError. The remedy is to discard the file, never to load it with weights_only=False:
    that would run whatever code a tampered file carries.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"the checkpoint {path} cannot be read: {e.strerror or e}") from e
    except Exception as e:  # noqa: BLE001 — unpickling errors come in many types
        raise CheckpointError(f"the checkpoint {path} is not a valid checkpoint ({type(e).__name__}) "
                              "and was not loaded") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"the checkpoint {path} is not a valid checkpoint (it holds a "
                              f"{type(state).__name__}) and was not loaded")
    return state


def check_owner(state: dict[str, Any], path: Path, owner: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another run (or another database's run with the same id),
    or by this run under another configuration."""
    found = state.get(OWNER)
    if found != owner:
        whose = (f"run {found.get('run_id')} of database {found.get('database_id')}" if isinstance(found, dict)
                 else "an unknown run (it records no owner)")
        raise CheckpointError(f"the checkpoint {path} belongs to {whose}, not to run {owner['run_id']} of "
                              f"database {owner['database_id']}; refusing to resume from it")
    stored = state.get("config")
    if stored != config:
        differ = sorted(k for k in set(config) | set(stored or {}) if (stored or {}).get(k) != config.get(k))
        raise CheckpointError(f"the checkpoint {path} was written with another configuration "
                              f"({', '.join(differ[:5]) or 'unknown'} differ); refusing to resume from it")
