"""Which database this is: a uuid stored in the database itself (table lab_meta, migration 0003).

Run ids restart at 1 in every new database, so a run id alone does not say whose run it is. The
database id does: run folders are `runs/<database id>/<run id>/`, checkpoints record it, and
workers and run processes check, every heartbeat, that the database they write to is still the
one they started on. A SQLite file deleted or replaced under a running worker is noticed by its
inode too: a process's pooled connections keep reading the deleted file, so a query alone would
never see the change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from db.models import lab_meta
from db.migrate import SchemaError
from db.session import is_sqlite, read_tx

DATABASE_ID = "database_id"
ENV_VAR = "SIMCLR_DB_ID"  # a worker hands its database id to each run process


class DatabaseChanged(RuntimeError):
    """The database behind an engine is no longer the one a process started on."""


@dataclass(frozen=True)
class Identity:
    database_id: str
    file: tuple[int, int] | None = None  # (st_dev, st_ino) of a SQLite file


def database_id(engine: Engine) -> str:
    with read_tx(engine) as conn:
        value = conn.execute(select(lab_meta.c.value).where(lab_meta.c.key == DATABASE_ID)).scalar()
    if not value:
        raise SchemaError(f"the run database {describe(engine)} has no database id (table lab_meta): "
                          "run `python -m engine db upgrade`")
    return value


def _sqlite_file(engine: Engine) -> str | None:
    if not is_sqlite(engine):
        return None
    path = make_url(str(engine.url)).database
    return path if path and path != ":memory:" else None


def _file_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def identify(engine: Engine) -> Identity:
    path = _sqlite_file(engine)
    return Identity(database_id(engine), _file_key(path) if path else None)


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def verify(engine: Engine, expected: Identity | str) -> None:
    """Raise DatabaseChanged (one clear sentence) unless `engine` still reaches the `expected` database."""
    if isinstance(expected, str):
        expected = Identity(expected)
    path = _sqlite_file(engine)
    if path and expected.file is not None:
        now = _file_key(path)
        if now is None:
            raise DatabaseChanged(f"the database file {path} was deleted or moved away (it was database "
                                  f"{expected.database_id})")
        if now != expected.file:
            raise DatabaseChanged(f"the database file {path} was replaced by another file (it was database "
                                  f"{expected.database_id})")
    try:
        found = database_id(engine)
    except (SchemaError, ProgrammingError) as e:  # no lab_meta any more; a network blip is not this
        raise DatabaseChanged(f"the run database {describe(engine)} is no longer database "
                              f"{expected.database_id}: {str(e).splitlines()[0]}") from None
    if found != expected.database_id:
        raise DatabaseChanged(f"the run database {describe(engine)} is now database {found}, "
                              f"not {expected.database_id}")
