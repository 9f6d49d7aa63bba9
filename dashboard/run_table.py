"""The runs table: run summaries as a frame, and selections that survive a changing table.

st.dataframe reports a selection as row *positions*. The table is redrawn every ~1.5 s and rows
come and go (new runs, deletions, a run leaving a status filter), so a position is only meaningful
against the exact list of runs that was on screen when the user clicked. We keep that list (the
snapshot) in session state, map positions back to run ids through it, and when the list changes
we start a fresh widget (new key) whose default selection is the same runs at their new positions.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import streamlit as st

from dashboard import nav
from dashboard.common import fmt_duration
from db import executor

COLUMN_CONFIG = {
    "id": st.column_config.NumberColumn("id", format="%d", width="small"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "loss": st.column_config.NumberColumn("loss", format="%.4f", help="latest train/loss (NT-Xent)"),
    "kNN top-1": st.column_config.NumberColumn("kNN top-1", format="%.4f"),
    "linear top-1": st.column_config.NumberColumn("linear top-1", format="%.4f"),
    "executor": st.column_config.TextColumn("executor", help="where it runs: a local worker's slot, or a Ray job "
                                            "and its node (the run page links the Ray dashboard)"),
    "open": st.column_config.LinkColumn("open", display_text="details", width="small"),
}


def frame(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        rows.append({
            "id": r["id"], "name": r.get("name") or "", "status": r["display_status"], "progress": r["progress"],
            "dataset": r["dataset"], "encoder": r["encoder"], "optimizer": r["optimizer"], "batch": r["batch_size"],
            "subset": "all" if r["subset_size"] is None else str(r["subset_size"]), "epochs": r["epochs"],
            "seed": cfg.get("seed"), "loss": r.get("latest_loss"), "kNN top-1": r.get("knn_top1"),
            "linear top-1": r.get("linear_top1"), "duration": fmt_duration(r.get("duration_s")),
            "sweep": r.get("sweep_id") or "", "executor": executor.label(r.get("executor")),
            "open": f"{nav.RUN.url_path}?run={r['id']}",
        })
    columns = ["id", "name", "status", "progress", "dataset", "encoder", "optimizer", "batch", "subset", "epochs",
               "seed", "loss", "kNN top-1", "linear top-1", "duration", "sweep", "executor", "open"]
    return pd.DataFrame(rows, columns=columns)


def selectable_table(key: str, runs: Sequence[dict[str, Any]]) -> list[int]:
    """Draw the runs table; returns the ids of the selected runs."""
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
    event = st.dataframe(frame(runs), key=widget, on_select="rerun", selection_mode="multi-row", hide_index=True,
                         column_config=COLUMN_CONFIG, selection_default=default, placeholder="-")
    rows = list(event.selection.rows) if default is None else [ids.index(i) for i in selected]
    return [ids[p] for p in rows if 0 <= p < len(ids)]
