"""Polled results are shared by every open tab: one database read per SHARE_S, whoever asks."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from dashboard import live
from db import views
from tests.dashboard.dash_helpers import add_metrics, add_run


def test_twenty_tabs_polling_cost_one_read(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "SHARE_S", 60.0)
    run = add_run(db, status="running")
    add_metrics(db, run, "train/loss", [3.0, 2.0])
    reads: list[str] = []
    real_summaries, real_columns = views.run_summaries, views.metric_columns
    monkeypatch.setattr(views, "run_summaries", lambda *a, **k: reads.append("table") or real_summaries(*a, **k))
    monkeypatch.setattr(views, "metric_columns", lambda *a, **k: reads.append("curves") or real_columns(*a, **k))
    for tab in range(20):
        table = live.run_summaries(db, ("running",), "")
        frame = live.series(f"tab{tab}", db, [run], ["train/loss"], 100)
    assert reads == ["table", "curves"]
    assert [r["id"] for r in table] == [run] and list(frame["value"]) == [3.0, 2.0]
    live.forget()  # after the dashboard's own write (cancel, delete, launch) the next tab reads afresh
    live.run_summaries(db, ("running",), "")
    assert reads == ["table", "curves", "table"]
