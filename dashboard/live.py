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
from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dashboard import charts
from dashboard.estimate import eta_s
from db import views
from db.status import RUNNING, utcnow

SORT = ["run_id", "name", "step"]
REFRESH_EVERY_S = 1.5  # a new point reaches the screen within this plus one query (~2 s target)
SHARE_S = 0.5  # one database read serves every tab for this long (well under REFRESH_EVERY_S)
TIMINGS_S = 30.0  # finished runs' phase times (for ETAs) are read this often
ETA_KEY = "eta_s"  # a running run's seconds left, in the shared rows of run_summaries


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
class _Answer:
    """One shared result (st.cache_resource holds it for every session) and when it was computed."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: Any = None
    at: float = float("-inf")

    def fresh(self, period_s: float, compute: Callable[[], Any]) -> Any:
        """The value, recomputed first when older than `period_s`; one computation at a time, the
        sessions that wait meanwhile take its result."""
        with self.lock:
            if time.monotonic() - self.at >= period_s:
                self.value = compute()
                self.at = time.monotonic()
            return self.value


@st.cache_resource(max_entries=64, show_spinner=False)
def _shared_series(url: str, run_ids: tuple[int, ...], names: tuple[str, ...],
                   max_points: int) -> tuple[LiveSeries, _Answer]:
    return LiveSeries(run_ids, names, max_points), _Answer()


def series(key: str, engine: Engine, run_ids: Sequence[int], names: Sequence[str], max_points: int) -> pd.DataFrame:
    """The curves of `run_ids` x `names`, shared by every session showing them, brought up to date.

    The frame returned is shared: callers must not modify it. `key` keeps this session's view of it
    in st.session_state (tests look at it)."""
    cache, answer = _shared_series(str(engine.url), tuple(run_ids), tuple(names), max_points)
    frame = answer.fresh(SHARE_S, lambda: cache.refresh(engine))
    st.session_state[key] = cache
    return frame


@st.cache_resource(max_entries=32, show_spinner=False)
def _summaries(url: str, statuses: tuple[str, ...], sweep: str) -> _Answer:
    return _Answer()


@st.cache_resource(max_entries=8, show_spinner=False)
def _timings(url: str) -> _Answer:
    return _Answer()


def run_summaries(engine: Engine, statuses: Sequence[str] = (), sweep: str = "") -> list[dict[str, Any]]:
    """views.run_summaries with each running run's ETA (ETA_KEY), one query and one set of ETAs per
    filter per SHARE_S for all sessions (the result is shared: do not modify it)."""
    def read() -> list[dict[str, Any]]:
        rows = views.run_summaries(engine, status=statuses or None, sweep_id=sweep or None, now=utcnow())
        found = etas(engine, rows)
        for r in rows:
            if r["id"] in found:
                r[ETA_KEY] = found[r["id"]]
        return rows

    return _summaries(str(engine.url), tuple(statuses), sweep).fresh(SHARE_S, read)


def forget() -> None:
    """Drop the shared run tables: called after the dashboard itself changed runs (the curves only
    grow, so they need no reset)."""
    _summaries.clear()


def etas(engine: Engine, runs: Sequence[dict[str, Any]]) -> dict[int, float | None]:
    """{run id: seconds left} for the running runs among `runs` (rows of db.views.run_summaries).

    Rows from run_summaries above carry theirs already; the others are computed here."""
    running = [r for r in runs if r["status"] == RUNNING]
    missing = [r for r in running if ETA_KEY not in r]
    # Finished runs' phase times change only when a run finishes: read them twice a minute, not per redraw.
    history = _timings(str(engine.url)).fresh(TIMINGS_S, lambda: views.run_timings(engine)) if missing else ()
    return {r["id"]: r[ETA_KEY] if ETA_KEY in r else eta_s(r, history) for r in running}
