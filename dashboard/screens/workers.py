"""Workers: every worker (where it runs, its devices and slots, what it runs, its last heartbeat),
the queue in the order workers will take it, and the running runs' device use over time."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import streamlit as st

from dashboard import device_use, live, nav, poll
from dashboard.common import fmt_duration, fmt_time, get_engine, run_label
from db import views
from db.heartbeat import STALE_AFTER_S

REFRESH_S = 3 * live.REFRESH_EVERY_S  # heartbeats come every few seconds; no need to poll faster


def workers_frame(found: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = [{
        "worker": w["id"], "state": w["state"], "host": w["hostname"], "pid": w["pid"], "devices": w["devices"],
        "slots": w["slots"], "busy": f"{len(w['running'])}/{w['slots']}",
        "running": ", ".join(f"{run_label(r)} on {r['device'] or '?'}" for r in w["running"]) or "-",
        "last heartbeat": f"{fmt_duration(w['heartbeat_age_s'])} ago",
        "started": fmt_time(w["started_at"]), "stopped": fmt_time(w["stopped_at"]),
    } for w in found]
    return pd.DataFrame(rows, columns=["worker", "state", "host", "pid", "devices", "slots", "busy", "running",
                                       "last heartbeat", "started", "stopped"])


def queue_frame(queued: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = [{"position": i + 1, "id": r["id"], "name": r["name"] or "", "sweep": r["sweep_id"] or "",
             "encoder": r["encoder"], "batch": r["batch_size"], "epochs": r["epochs"],
             "queued at": fmt_time(r["created_at"]), "attempts": r["attempts"],
             "open": f"{nav.RUN.url_path}?run={r['id']}"} for i, r in enumerate(queued)]
    return pd.DataFrame(rows, columns=["position", "id", "name", "sweep", "encoder", "batch", "epochs", "queued at",
                                       "attempts", "open"])


@st.fragment
def live_section() -> None:
    poll.every(REFRESH_S, key="workers_poll")
    engine = get_engine()
    found = views.workers_overview(engine)
    alive = [w for w in found if w["state"] == views.WORKER_ALIVE]
    st.subheader(f"Workers ({len(alive)} alive)")
    if not found:
        st.info("No worker has registered yet. Start one with `python -m engine worker` "
                "(the dashboard starts one itself unless SIMCLR_NO_LOCAL_WORKER=1).")
    else:
        st.dataframe(workers_frame(found), hide_index=True, key="workers_table",
                     column_config={"pid": st.column_config.NumberColumn(format="%d")})
        st.caption(f"alive: heartbeat within its --stale-after (default {STALE_AFTER_S:.0f} s) · lost: silent longer (its runs are "
                   "requeued by a live worker) · stopped: exited. The newest 30 are listed.")
    queued = views.queued_in_order(engine)
    st.subheader(f"Queue ({len(queued)} waiting)")
    if queued:
        st.dataframe(queue_frame(queued), hide_index=True, key="queue_table",
                     column_config={"id": st.column_config.NumberColumn(format="%d"),
                                    "open": st.column_config.LinkColumn(display_text="details")})
    else:
        st.caption("Nothing is queued.")
    running = [r for w in found for r in w["running"]]
    st.subheader("Device use of the running runs")
    if not running:
        st.caption("No run is running. Each run's page keeps its device use after it ends.")
        return
    device_use.draw(engine, [r["id"] for r in running], {r["id"]: run_label(r) for r in running}, "workers_use")


def render() -> None:
    st.title("Workers")
    live_section()


if __name__ == "__main__":
    render()
