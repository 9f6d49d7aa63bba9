"""Engine set-up: one place that knows how to open the run database.

SQLite (the default) gets WAL, a busy timeout, synchronous=NORMAL and foreign keys; write
transactions begin IMMEDIATE, because a deferred BEGIN that later upgrades to a write fails at
once with "database is locked" whatever the timeout. Readers keep plain deferred transactions so
that the dashboard never waits on a writer.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from db.config import PROJECT_ROOT

DEFAULT_DB_PATH = PROJECT_ROOT / "runs" / "simclr.db"
BUSY_TIMEOUT_MS = 30_000


def default_url() -> str:
    """`SIMCLR_DB` when set, else a SQLite file under the project's runs/ folder."""
    return os.environ.get("SIMCLR_DB") or f"sqlite:///{DEFAULT_DB_PATH}"


def describe_url(url: str) -> str:
    """The URL for messages: never with its password."""
    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str | None = None, *, upgrade: bool = True) -> Engine:
    """Open the database at `url` (default: `default_url()`).

    A database with no tables is created at the newest schema (so a fresh clone just works);
    one at an older revision raises db.migrate.SchemaError telling the user to run `python -m engine db upgrade`.
    Pass upgrade=False to skip the check (the migration command itself does).
    """
    url = url or default_url()
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        _configure_sqlite(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if upgrade:
        from db.migrate import ensure_schema  # local import: alembic is only needed here (migrate never imports session)

        ensure_schema(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is always deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction: BEGIN IMMEDIATE on SQLite, an ordinary one elsewhere. Commits on exit."""
    with engine.execution_options(sqlite_immediate=True).begin() as conn:
        yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn


@contextmanager
def scratch_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """A fresh schema on the PostgreSQL server at `url`, dropped afterwards; yields a URL that uses it
    (the tests' and benchmarks' throw-away databases on one shared server)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

