"""Live tables and curves: read only new rows, once for every open tab.

A fragment redraws every ~1.5 s. Re-reading every point of every selected run each time would
cost O(all rows) per tick per browser tab; instead each session keeps its curves in a cache and
asks the database only for metric rows whose id is above the newest it has seen (ids only grow).
History is loaded once, downsampled in SQL; new rows are appended raw and the whole is cut back to
the point budget (charts.downsample) when it grows past it.

Twenty tabs polling the same runs must not cost twenty times one: the curves of a given selection
are one shared LiveSeries per server (st.cache_resource), brought up to date at most every
SHARE_S seconds whoever asks, and the runs table is one shared query result per filter for
SHARE_S seconds. The dashboard's own writes (cancel, delete, launch) call `forget()` so that the
tab that made them sees their effect at once; other writers (workers) show within SHARE_S.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dashboard import charts
from db import views
from db.status import utcnow

SORT = ["run_id", "name", "step"]
REFRESH_EVERY_S = 1.5  # a new point reaches the screen within this plus one query (~2 s target)
SHARE_S = 0.5  # one database read serves every tab for this long (well under REFRESH_EVERY_S)


@dataclass
class LiveSeries:
    run_ids: tuple[int, ...]
    names: tuple[str, ...]
    max_points: int
    last_id: int = 0
    frame: pd.DataFrame = field(default_factory=lambda: charts.frame({}))
    loaded: bool = False

    def refresh(self, engine: Engine) -> pd.DataFrame:
        if not self.loaded:
            # Take the high-water mark before the bulk read: rows landing in between are read again
            # next time (and de-duplicated), never missed.
            self.last_id = views.max_metric_id(engine)
            self.frame = charts.frame(views.metric_columns(engine, self.run_ids, self.names,
                                                           max_points=self.max_points))
            self.loaded = True
            return self.frame
        new = views.metric_columns(engine, self.run_ids, self.names, after_id=self.last_id)
        if new["id"]:
            self.last_id = max(self.last_id, max(new["id"]))
            # A resumed run re-logs steps after its checkpoint: the newer row wins.
            merged = pd.concat([self.frame, charts.frame(new)], ignore_index=True)
            merged = merged.drop_duplicates(["run_id", "name", "step"], keep="last").sort_values(SORT, kind="stable")
            if len(merged) > 2 * self.max_points * max(1, len(self.run_ids)) * len(self.names):
                merged = charts.downsample(merged, self.max_points)
            self.frame = merged.reset_index(drop=True)
        return self.frame


@dataclass
class _Shared:
    series: LiveSeries
    lock: threading.Lock = field(default_factory=threading.Lock)
    refreshed_at: float = float("-inf")


@st.cache_resource(max_entries=64, show_spinner=False)
def _shared_series(url: str, run_ids: tuple[int, ...], names: tuple[str, ...], max_points: int) -> _Shared:
    return _Shared(LiveSeries(run_ids, names, max_points))


def series(key: str, engine: Engine, run_ids: Sequence[int], names: Sequence[str], max_points: int) -> pd.DataFrame:
    """The curves of `run_ids` x `names`, shared by every session showing them, brought up to date.

    The frame returned is shared: callers must not modify it. `key` keeps this session's view of it
    in st.session_state (tests look at it)."""
    shared = _shared_series(str(engine.url), tuple(run_ids), tuple(names), max_points)
    with shared.lock:  # one refresh at a time; the others wait and take its result
        if time.monotonic() - shared.refreshed_at >= SHARE_S:
            shared.series.refresh(engine)
            shared.refreshed_at = time.monotonic()
        st.session_state[key] = shared.series
        return shared.series.frame


@dataclass
class _Answer:
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = None
    at: float = float("-inf")


@st.cache_resource(max_entries=32, show_spinner=False)
def _summaries(url: str, statuses: tuple[str, ...], sweep: str) -> _Answer:
    return _Answer()


def run_summaries(engine: Engine, statuses: Sequence[str] = (), sweep: str = "") -> list[dict[str, Any]]:
    """views.run_summaries, one query per filter per SHARE_S for all sessions (the result is shared:
    do not modify it)."""
    answer = _summaries(str(engine.url), tuple(statuses), sweep)
    with answer.lock:
        if time.monotonic() - answer.at >= SHARE_S:
            answer.value = views.run_summaries(engine, status=statuses or None, sweep_id=sweep or None, now=utcnow())
            answer.at = time.monotonic()
        return answer.value


def forget() -> None:
    """Drop the shared run tables: called after the dashboard itself changed runs (the curves only
    grow, so they need no reset)."""
    _summaries.clear()
