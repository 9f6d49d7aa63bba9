"""db/annotations.py: tags and notes, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from db.annotations import AnnotationError, parse_tags, set_note, set_tags, update_tags
from db.queries import get_run
from db.session import make_engine
from tests.dashboard.dash_helpers import add_run


def test_tags_add_remove_and_note(db_url: str) -> None:
    engine = make_engine(db_url)
    run = add_run(engine)
    assert update_tags(engine, run, add=["baseline", " lr-sweep "]) == ["baseline", "lr-sweep"]
    assert update_tags(engine, run, add=["baseline"], remove=["lr-sweep", "never-there"]) == ["baseline"]
    assert set_tags(engine, run, ["b", "a", "b"]) == ["a", "b"]
    assert set_note(engine, run, "  ![x](http://evil/img.png) keeps as text \n") == \
        "![x](http://evil/img.png) keeps as text"
    row = get_run(engine, run)
    assert row["tags"] == ["a", "b"] and row["note"].startswith("![x]")
    assert set_tags(engine, run, []) == [] and get_run(engine, run)["tags"] is None
    assert set_note(engine, run, "   ") is None and get_run(engine, run)["note"] is None
    engine.dispose()


@pytest.mark.parametrize("call,needle", [
    (lambda e, r: update_tags(e, r, add=["two words"]), "may only hold letters"),
    (lambda e, r: update_tags(e, r, add=[""]), "cannot be empty"),
    (lambda e, r: update_tags(e, r, add=["x" * 41]), "longer than 40"),
    (lambda e, r: update_tags(e, 999, add=["a"]), "no run with id 999"),
    (lambda e, r: set_note(e, 999, "hi"), "no run with id 999"),
    (lambda e, r: set_note(e, r, "x" * 10_001), "at most 10000 characters"),
])
def test_bad_annotations_are_refused_naming_the_problem(sqlite_url: str, call, needle: str) -> None:  # noqa: ANN001
    engine = make_engine(sqlite_url)
    run = add_run(engine)
    update_tags(engine, run, add=["kept"])
    with pytest.raises(AnnotationError, match=needle):
        call(engine, run)
    assert get_run(engine, run)["tags"] == ["kept"]  # nothing lost


def test_parse_tags_splits_on_commas_and_spaces() -> None:
    assert parse_tags("b, a  c,,a") == ["a", "b", "c"]
    with pytest.raises(AnnotationError):
        parse_tags("ok, n@pe")
