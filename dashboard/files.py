"""Files the dashboard serves: only those that lie inside the runs folder.

Paths come from the database (checkpoint_path, log_path), which any worker or a hand edit can
write; before the dashboard reads one for a viewer it must resolve (symlinks included) to a file
under SIMCLR_RUNS_DIR. One helper for every download.
"""

from __future__ import annotations

from pathlib import Path

from db.config import run_dir, runs_root


def under_runs(path: str | Path | None) -> Path | None:
    """`path` resolved, if it is an existing file inside the runs folder; else None."""
    if not path:
        return None
    resolved = Path(path).resolve()
    if not resolved.is_file() or not resolved.is_relative_to(runs_root().resolve()):
        return None
    return resolved


def run_file(run_id: int, name: str) -> Path | None:
    """A file a run left in its own folder (db.config's *_FILE names), if it is there."""
    return under_runs(run_dir(run_id) / name)
