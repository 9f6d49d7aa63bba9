"""Migration 0005 (run tags and note) on a database that already holds runs, both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from db.annotations import update_tags
from db.migrate import alembic_config
from db.queries import create_run, get_run
from db.session import make_engine
from tests.conftest import tiny_config


def _columns(engine) -> set[str]:  # noqa: ANN001
    return {c["name"] for c in inspect(engine).get_columns("runs")}


def test_0005_adds_tags_and_note_keeping_runs_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url, upgrade=False)
    command.upgrade(alembic_config(engine), "0006")  # the revision before this one
    assert "tags" not in _columns(engine)
    run = create_run(engine, tiny_config(), name="before")  # written by the older schema's columns only
    command.upgrade(alembic_config(engine), "0005")
    assert {"tags", "note"} <= _columns(engine)
    assert get_run(engine, run)["name"] == "before" and get_run(engine, run)["tags"] is None
    update_tags(engine, run, add=["kept"])
    command.downgrade(alembic_config(engine), "0006")
    with engine.connect() as conn:  # (the models now name columns this schema lacks: plain SQL)
        assert conn.execute(text("SELECT name FROM runs WHERE id = :id"), {"id": run}).scalar() == "before"
    assert "tags" not in _columns(engine)
    engine.dispose()
