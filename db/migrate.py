"""Alembic migrations, driven from code: `python -m engine db upgrade` and the fresh-database path."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaError(RuntimeError):
    """The database schema is older (or newer) than this code expects."""


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# The tables of revision 0001, as databases made before migrations existed have them.
FIRST_SCHEMA = {"runs", "metrics", "workers"}


def known_revisions(engine: Engine) -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()}


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _newer_than_code(engine: Engine, current: str) -> SchemaError:
    return SchemaError(f"the run database {_describe(engine)} is at schema revision {current}, newer than this "
                       f"code (which knows up to {head_revision(engine)}): update the code; a downgrade is not "
                       "offered because it would drop data")


def has_tables(engine: Engine) -> bool:
    return inspect(engine).has_table("runs")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (before, after).

    A database made before migrations (tables, no alembic_version) is adopted when its tables are
    revision 0001's; anything else it cannot tell apart is refused rather than guessed at.
    """
    before = current_revision(engine)
    if before is not None and before not in known_revisions(engine):
        raise _newer_than_code(engine, before)
    if before is None and has_tables(engine):
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        if tables != FIRST_SCHEMA:
            raise SchemaError(f"the run database {_describe(engine)} has tables ({', '.join(sorted(tables))}) but no "
                              "migration history, and they are not a schema this code knows: move it aside to "
                              "start afresh")
        command.stamp(alembic_config(engine), "0001")
        try:
            command.upgrade(alembic_config(engine), "head")
        except Exception as e:  # not 0001's columns after all: undo the stamp, say so
            command.stamp(alembic_config(engine), "base")
            raise SchemaError(f"the run database {_describe(engine)} has no migration history and could not be "
                              f"adopted as revision 0001 ({str(e).splitlines()[0]}): move it aside to start "
                              "afresh") from None
        return before, current_revision(engine) or ""
    command.upgrade(alembic_config(engine), "head")
    return before, current_revision(engine) or ""


def ensure_schema(engine: Engine) -> None:
    """Create a fresh database at head; refuse one whose schema differs from this code's."""
    current = current_revision(engine)
    head = head_revision(engine)
    if current == head:
        return
    if current is None and not has_tables(engine):
        upgrade(engine)
        return
    if current is not None and current not in known_revisions(engine):
        raise _newer_than_code(engine, current)
    if current is None:
        raise SchemaError(f"the run database {_describe(engine)} has tables but no migration history (it was made "
                          "before migrations): run `python -m engine db upgrade` (back it up first) to adopt it")
    raise SchemaError(
        f"the run database {engine.url.render_as_string(hide_password=True)} is at schema revision "
        f"{current or 'none'}, this code needs {head}: run `python -m engine db upgrade` (back it up first)"
    )
