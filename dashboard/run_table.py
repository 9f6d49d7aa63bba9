"""The runs table: run summaries as a frame, and selections that survive a changing table.

st.dataframe reports a selection as row *positions*. The table is redrawn every ~1.5 s and rows
come and go (new runs, deletions, a run leaving a status filter), so a position is only meaningful
against the exact list of runs that was on screen when the user clicked. We keep that list (the
snapshot) in session state, map positions back to run ids through it, and when the list changes
we start a fresh widget (new key) whose default selection is the same runs at their new positions.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
import streamlit as st

from dashboard import nav
from dashboard.common import fmt_duration, fmt_time
from db import executor
from db.config import stored_value
from db.status import RUNNING
from db.views import CANCELLING

# Widths in pixels where the content is known to be short: the default columns must fit the ~940 px
# a 1400 px window leaves beside the sidebar.
COLUMN_CONFIG = {
    "id": st.column_config.NumberColumn("id", format="%d", width=45),
    "name": st.column_config.TextColumn("name", width=170, help="the run's name (a sweep's runs: their grid values)"),
    "status": st.column_config.TextColumn("status", width=85),
    "phase": st.column_config.TextColumn("phase", width=80, help="what a running run does now"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                width=80, help="100 % only once the run is completed"),
    "ETA": st.column_config.TextColumn("ETA", width=80, help="time left, from the run's own speed"),
    "loss": st.column_config.NumberColumn("loss", format="%.4f", width=65, help="latest train/loss (NT-Xent)"),
    "kNN top-1": st.column_config.NumberColumn("kNN", format="%.4f", width=65, help="kNN top-1 accuracy"),
    "linear top-1": st.column_config.NumberColumn("linear", format="%.4f", width=65,
                                                  help="linear probe top-1 accuracy (test set)"),
    "probe": st.column_config.TextColumn("probe", width=60, help="the linear probe behind 'linear': lbfgs (ours, "
                                         "fast) or seed (the seed's Adam protocol)"),
    "duration": st.column_config.TextColumn("duration", width=85),
    "disk MB": st.column_config.NumberColumn("disk MB", format="%.1f", width=70, help="checkpoint and log on disk"),
    "batch": st.column_config.NumberColumn("batch", format="%d", width=60),
    "subset": st.column_config.TextColumn("subset", width=60),
    "epochs": st.column_config.NumberColumn("epochs", format="%d", width=60),
    "seed": st.column_config.NumberColumn("seed", format="%d", width=50),
    "executor": st.column_config.TextColumn("executor", help="where it runs: a local worker's slot, or a Ray job "
                                            "and its node (the run page links the Ray dashboard)"),
    "open": st.column_config.LinkColumn("open", display_text="details", width=65),
}
COLUMNS = ["id", "name", "status", "phase", "progress", "ETA", "loss", "kNN top-1", "linear top-1", "probe",
           "duration", "disk MB", "dataset", "encoder", "optimizer", "batch", "subset", "epochs", "seed", "device",
           "sweep", "executor", "tags", "created", "open"]
# What fits at 1400 px beside the sidebar: the results and the time; the rest in the column chooser
# (the long sweep label is the Sweep filter's business, and the run page's; disk use is totalled
# under the table, per run in the chooser's "disk MB").
DEFAULT_COLUMNS = ["id", "name", "status", "phase", "progress", "ETA", "loss", "kNN top-1", "linear top-1",
                   "duration", "open"]


def frame(runs: Sequence[dict[str, Any]], etas: Mapping[int, float | None] | None = None,
          disk: Mapping[int, int] | None = None) -> pd.DataFrame:
    """The table's rows; `etas`: seconds left of running runs; `disk`: bytes of each run's folder."""
    rows = []
    etas, disk = etas or {}, disk or {}
    for r in runs:
        cfg = r.get("config") or {}
        live = r["display_status"] in (RUNNING, CANCELLING)  # a dead run is doing nothing
        rows.append({
            "id": r["id"], "name": r.get("name") or "", "status": r["display_status"],
            "phase": (r.get("phase") or "") if live else "", "progress": r["progress"],
            "ETA": fmt_duration(etas.get(r["id"])) if live else "",
            "dataset": r["dataset"], "encoder": r["encoder"], "optimizer": r["optimizer"], "batch": r["batch_size"],
            "subset": "all" if r["subset_size"] is None else str(r["subset_size"]), "epochs": r["epochs"],
            "seed": cfg.get("seed"), "loss": r.get("latest_loss"), "kNN top-1": r.get("knn_top1"),
            "linear top-1": r.get("linear_top1"), "probe": stored_value(cfg, "probe"),
            "duration": fmt_duration(r.get("duration_s")),
            "disk MB": disk.get(r["id"], 0) / 1e6,
            "device": r.get("device") or "", "sweep": r.get("sweep_id") or "",
            "executor": executor.label(r.get("executor")), "tags": ", ".join(r.get("tags") or []),
            "created": fmt_time(r.get("created_at")),
            "open": f"{nav.RUN.url_path}?run={r['id']}",
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def column_chooser(key: str) -> list[str]:
    """A "Columns" popover; returns the columns to show, in the table's order."""
    state = st.session_state
    state.setdefault(key, list(DEFAULT_COLUMNS))
    with st.popover("Columns", icon=":material/view_column:", help="Choose the columns of the table"):
        chosen = st.multiselect("Columns shown", COLUMNS, key=key)
    return [c for c in COLUMNS if c in chosen] or ["id"]


def selectable_table(key: str, runs: Sequence[dict[str, Any]], *, etas: Mapping[int, float | None] | None = None,
                     disk: Mapping[int, int] | None = None, columns: Sequence[str] | None = None) -> list[int]:
    """Draw the runs table (`columns` shown); returns the ids of the selected runs."""
    state = st.session_state
    ids = [r["id"] for r in runs]
    snapshot: dict[str, Any] = state.get(f"{key}_snapshot") or {"ids": [], "version": 0}
    widget = f"{key}_{snapshot['version']}"
    drawn = snapshot["ids"]
    # Positions in the widget's state refer to `drawn`, the rows as they were on screen.
    positions = (state.get(widget) or {}).get("selection", {}).get("rows", [])
    selected = [drawn[p] for p in positions if 0 <= p < len(drawn)]
    selected = [i for i in selected if i in ids]  # deleted or filtered out since
    default = None
    if ids != drawn:
        snapshot = {"ids": ids, "version": snapshot["version"] + 1}
        state[f"{key}_snapshot"] = snapshot
        widget = f"{key}_{snapshot['version']}"
        default = {"selection": {"rows": [ids.index(i) for i in selected], "columns": []}}
    event = st.dataframe(frame(runs, etas, disk), key=widget, column_order=list(columns or DEFAULT_COLUMNS),
                         on_select="rerun", selection_mode="multi-row", hide_index=True,
                         column_config=COLUMN_CONFIG, selection_default=default, placeholder="-")
    rows = list(event.selection.rows) if default is None else [ids.index(i) for i in selected]
    return [ids[p] for p in rows if 0 <= p < len(ids)]
