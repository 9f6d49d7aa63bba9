"""`python -m engine tag | note`."""

from __future__ import annotations

import pytest

from db.queries import get_run
from db.session import make_engine
from engine.jobs.cli import main
from tests.dashboard.dash_helpers import add_run


def test_tag_and_note_from_the_command_line(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    run = add_run(make_engine(sqlite_url))
    assert main(["--db", sqlite_url, "tag", str(run), "--add", "x", "--add", "y"]) == 0
    assert main(["--db", sqlite_url, "tag", str(run), "--remove", "y"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"run {run} tags: x"
    assert main(["--db", sqlite_url, "note", str(run), "lr too high"]) == 0
    row = get_run(make_engine(sqlite_url), run)
    assert row["tags"] == ["x"] and row["note"] == "lr too high"


def test_bad_tag_or_unknown_run_exits_2(sqlite_url: str, capsys: pytest.CaptureFixture) -> None:
    run = add_run(make_engine(sqlite_url))
    assert main(["--db", sqlite_url, "tag", str(run), "--add", "a b"]) == 2
    assert "may only hold letters" in capsys.readouterr().err
    assert main(["--db", sqlite_url, "note", "999", "hi"]) == 2
    assert "no run with id 999" in capsys.readouterr().err
