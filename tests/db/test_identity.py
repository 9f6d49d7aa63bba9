"""The database's identity: a uuid per database, and noticing a database swapped under a process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from db.identity import DatabaseChanged, database_id, identify, verify
from db.session import make_engine


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_each_database_has_its_own_id(db_url: str, tmp_path: Path) -> None:
    first = make_engine(db_url)
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    assert len(database_id(first)) == 32 and database_id(first) != database_id(other)
    assert database_id(make_engine(db_url)) == database_id(first)  # stored, not made up per connection


def test_a_deleted_or_replaced_sqlite_file_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    engine = make_engine(f"sqlite:///{path}")
    identity = identify(engine)
    verify(engine, identity)  # unchanged: no error
    _remove_sqlite(path)
    with pytest.raises(DatabaseChanged, match="deleted or moved away"):
        verify(engine, identity)
    make_engine(f"sqlite:///{path}").dispose()  # someone starts afresh at the same path
    with pytest.raises(DatabaseChanged, match="replaced by another file"):
        verify(engine, identity)
    assert os.path.exists(path)


def test_another_database_behind_the_same_url_is_noticed(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(DatabaseChanged, match="is now database"):
        verify(engine, "0" * 32)
