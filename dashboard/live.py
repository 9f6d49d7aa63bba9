"""Live curves that read only new rows.

A fragment redraws every ~1.5 s. Re-reading every point of every selected run each time would
cost O(all rows) per tick per browser tab; instead each session keeps its curves in a cache and
asks the database only for metric rows whose id is above the newest it has seen (ids only grow).
History is loaded once, downsampled in SQL; new rows are appended raw and the whole is cut back to
the point budget (charts.downsample) when it grows past it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dashboard import charts
from dashboard.estimate import eta_s
from db import views
from db.status import RUNNING

SORT = ["run_id", "name", "step"]
REFRESH_EVERY_S = 1.5  # a new point reaches the screen within this plus one query (~2 s target)


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


def series(key: str, engine: Engine, run_ids: Sequence[int], names: Sequence[str], max_points: int) -> pd.DataFrame:
    """The cached curves of `run_ids` x `names` for this session, brought up to date."""
    wanted = (tuple(run_ids), tuple(names), max_points)
    cache: LiveSeries | None = st.session_state.get(key)
    if cache is None or (cache.run_ids, cache.names, cache.max_points) != wanted:
        cache = LiveSeries(*wanted)
        st.session_state[key] = cache
    return cache.refresh(engine)


@st.cache_data(ttl=30, show_spinner=False)
def _timings(_engine: Engine, url: str) -> list[dict[str, Any]]:
    # Finished runs' phase times change only when a run finishes: read them twice a minute, not per redraw.
    return views.run_timings(_engine)


def etas(engine: Engine, runs: Sequence[dict[str, Any]]) -> dict[int, float | None]:
    """{run id: seconds left} for the running runs among `runs` (rows of db.views.run_summaries)."""
    running = [r for r in runs if r["status"] == RUNNING]
    if not running:
        return {}
    history = _timings(engine, engine.url.render_as_string())
    return {r["id"]: eta_s(r, history) for r in running}
