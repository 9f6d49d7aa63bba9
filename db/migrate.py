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


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (before, after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, current_revision(engine) or ""


def ensure_schema(engine: Engine) -> None:
    """Create a fresh database at head; refuse one whose schema differs from this code's."""
    current = current_revision(engine)
    head = head_revision(engine)
    if current == head:
        return
    if current is None and not inspect(engine).has_table("runs"):
        upgrade(engine)
        return
    raise SchemaError(
        f"the run database {engine.url.render_as_string(hide_password=True)} is at schema revision "
        f"{current or 'none'}, this code needs {head}: run `python -m engine db upgrade` (back it up first)"
    )
