"""Fixtures for the dashboard's AppTest tests: a fresh SQLite database per test, no local worker,
no password (helpers to fill the database are in dash_helpers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from dashboard import hardware
from db.session import make_engine

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
TIMEOUT_S = 60  # generous: the test machine's cores are shared


@pytest.fixture(autouse=True)
def unshared_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Page tests change the database between two runs of a page within milliseconds: every run
    reads afresh here (test_live.py covers the sharing itself)."""
    from dashboard import live

    monkeypatch.setattr(live, "SHARE_S", 0.0)


@pytest.fixture
def db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("SIMCLR_DB", sqlite_url)
    monkeypatch.setenv("SIMCLR_NO_LOCAL_WORKER", "1")
    monkeypatch.delenv("SIMCLR_PASSWORD", raising=False)
    monkeypatch.delenv("SIMCLR_DATA_ROOTS", raising=False)
    # The Launch form's defaults depend on whether a GPU is present; tests choose, the machine does not
    # (True: RunConfig's own defaults; tests of the CPU-only defaults set it to False).
    monkeypatch.setattr(hardware, "machine_has_gpu", lambda: True)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app(db: Engine) -> Callable[..., AppTest]:
    """`app(page=None, **query_params)`: the whole app (auth, navigation, sidebar), run once."""

    def start(page: str | None = None, **query: Any) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
        at.query_params.update({k: str(v) for k, v in query.items()})
        at.run()
        if page:
            at.switch_page(f"screens/{page}.py").run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    return start
