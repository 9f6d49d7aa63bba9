from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from db.config import RunConfig
from db.migrate import current_revision, head_revision, upgrade
from db.queries import create_run, delete_metrics_after, metric_rows, write_metrics
from db.migrate import SchemaError
from db.session import make_engine, write_tx
from db.status import CANCELLED, COMPLETED, QUEUED, RUNNING, IllegalTransition, transition


def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_fresh_database_is_created_at_head(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision(engine)


def test_outdated_schema_is_refused_with_the_upgrade_command(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="python -m engine db upgrade"):
        make_engine(sqlite_url)


def test_unversioned_tables_are_refused(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    with pytest.raises(SchemaError, match="db upgrade"):
        make_engine(sqlite_url)


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = make_engine(db_url, upgrade=False)
    _, after = upgrade(engine)
    before2, after2 = upgrade(engine)
    assert after == after2 == before2 == head_revision(engine)


def test_metrics_are_unique_per_step_and_deleted_after_a_checkpoint(db_url: str) -> None:
    engine = make_engine(db_url)
    run_id = create_run(engine, RunConfig(batch_size=64))
    rows = [dict(run_id=run_id, name="train/loss", step=s, epoch=s / 10, value=float(s), time=0.0) for s in range(1, 11)]
    with write_tx(engine) as conn:
        write_metrics(conn, rows)
        write_metrics(conn, [dict(rows[4], value=-1.0)])  # a replayed step overwrites
    got = metric_rows(engine, [run_id])
    assert [r["step"] for r in got] == list(range(1, 11))
    assert got[4]["value"] == -1.0
    assert delete_metrics_after(engine, run_id, 6) == 4
    assert [r["step"] for r in metric_rows(engine, [run_id])] == list(range(1, 7))


def test_status_transitions_are_guarded(db_url: str) -> None:
    engine = make_engine(db_url)
    run_id = create_run(engine, RunConfig(batch_size=64))
    with write_tx(engine) as conn:
        with pytest.raises(IllegalTransition, match="completed to running"):
            transition(conn, run_id, RUNNING, expect=COMPLETED)
        assert transition(conn, run_id, RUNNING)
        assert not transition(conn, run_id, RUNNING, expect=QUEUED)  # someone else already moved it
        assert transition(conn, run_id, COMPLETED)
        assert not transition(conn, run_id, CANCELLED)  # finished runs stay finished


def test_deleting_a_run_deletes_its_metrics(tmp_path: Path, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    run_id = create_run(engine, RunConfig(batch_size=64))
    with write_tx(engine) as conn:
        write_metrics(conn, [dict(run_id=run_id, name="a", step=1, epoch=0.0, value=1.0, time=0.0)])
        conn.execute(text("DELETE FROM runs WHERE id = :i"), {"i": run_id})
    assert metric_rows(engine, [run_id]) == []


def test_a_database_newer_than_the_code_is_one_clear_line_and_upgrade_does_not_crash(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="newer than this code.*update the code") as info:
        make_engine(sqlite_url)
    assert "db upgrade" not in str(info.value)
    with pytest.raises(SchemaError, match="newer than this code"):
        upgrade(make_engine(sqlite_url, upgrade=False))


def test_a_database_made_before_migrations_is_adopted_by_upgrade(sqlite_url: str) -> None:
    from db.identity import database_id

    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE lab_meta"))  # what the first version left: runs, metrics, workers
        for column in ("executor", "tags", "note", "phase"):  # added by 0006, 0005 and 0004
            conn.execute(text(f"ALTER TABLE runs DROP COLUMN {column}"))
        conn.execute(text("ALTER TABLE workers DROP COLUMN stale_after_s"))  # added by 0002
    engine.dispose()
    with pytest.raises(SchemaError, match="no migration history.*db upgrade"):
        make_engine(sqlite_url)
    before, after = upgrade(make_engine(sqlite_url, upgrade=False))
    assert before is None and after == head_revision(engine)
    assert len(database_id(make_engine(sqlite_url))) == 32


def test_database_faults_are_one_line_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.jobs.cli import main

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    assert main(["--db", f"sqlite:///{corrupt}", "runs"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file is not a database" in err and str(corrupt) in err


def test_a_read_only_database_is_one_line_and_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.jobs.cli import main

    path = tmp_path / "lab.db"
    make_engine(f"sqlite:///{path}").dispose()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"  # what a read-only file or mount gives
    assert main(["--db", read_only, "submit", "--dataset", "synthetic", "--epochs", "1"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "readonly database" in err and "cannot be used" in err, err
    assert main(["--db", read_only, "runs"]) == 0  # reading still works


def test_a_full_database_refuses_a_sweep_whole_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """SQLite's own "database or disk is full" (a page limit stands in for the disk): one line, and
    not one run of the sweep written (all of a sweep, or none of it)."""
    from sqlalchemy import Engine, event

    from engine.jobs.cli import main

    url = f"sqlite:///{tmp_path / 'lab.db'}"
    make_engine(url).dispose()

    def no_room(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.execute("PRAGMA max_page_count = 1")  # cannot shrink below its size: no page more

    event.listen(Engine, "connect", no_room)
    try:
        code = main(["--db", url, "submit", "--dataset", "synthetic", "--epochs", "1",
                     "--grid", "seed=" + ",".join(str(i) for i in range(1, 201))])
    finally:
        event.remove(Engine, "connect", no_room)
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "full" in err, err
    with make_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0
