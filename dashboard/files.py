"""Files the dashboard serves: only those that lie inside the runs folder.

Paths come from the database (checkpoint_path, log_path), which any worker or a hand edit can
write; before the dashboard reads one for a viewer it must resolve (symlinks included) to a file
under SIMCLR_RUNS_DIR (db.config.under_runs_root, the one gate). One helper for every download.
"""

from __future__ import annotations

from pathlib import Path

from db.config import run_dir, under_runs_root
from db.identity import database_id


def under_runs(path: str | Path | None) -> Path | None:
    """`path` resolved, if it is an existing file inside the runs folder; else None."""
    resolved = under_runs_root(path)
    return resolved if resolved is not None and resolved.is_file() else None


def run_file(run_id: int, name: str) -> Path | None:
    """A file a run left in its own folder (db.config's *_FILE names), if it is there."""
    from dashboard.common import get_engine

    return under_runs(run_dir(run_id, database_id(get_engine())) / name)
