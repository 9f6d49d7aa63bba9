"""Migration 0005 (run tags and note) on a database that already holds runs, both backends."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from db.annotations import update_tags
from db.migrate import alembic_config
from db.session import make_engine


def _columns(engine) -> set[str]:  # noqa: ANN001
    return {c["name"] for c in inspect(engine).get_columns("runs")}


def _old_run(engine, name: str) -> int:  # noqa: ANN001
    """A run written with the columns every schema has (the models name the newest schema's columns)."""
    values = dict(status="queued", config="{}", dataset="synthetic", encoder="resnet18", optimizer="lars",
                  batch_size=32, epochs=1, created_at="2026-01-01 00:00:00", attempts=0, retries_left=1,
                  cancel_requested=False, epoch=0, step=0, name=name)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})"),
                     values)
        return conn.execute(text("SELECT max(id) FROM runs")).scalar()


def test_0005_adds_tags_and_note_keeping_runs_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url, upgrade=False)
    command.upgrade(alembic_config(engine), "0006")  # the revision before this one
    assert "tags" not in _columns(engine)
    run = _old_run(engine, name="before")
    command.upgrade(alembic_config(engine), "0005")
    assert {"tags", "note"} <= _columns(engine)
    with engine.connect() as conn:  # plain SQL: the models name columns of later revisions too
        assert conn.execute(text("SELECT name, tags FROM runs WHERE id = :id"), {"id": run}).one() == ("before", None)
    update_tags(engine, run, add=["kept"])
    command.downgrade(alembic_config(engine), "0006")
    with engine.connect() as conn:  # (the models now name columns this schema lacks: plain SQL)
        assert conn.execute(text("SELECT name FROM runs WHERE id = :id"), {"id": run}).scalar() == "before"
    assert "tags" not in _columns(engine)
    engine.dispose()
