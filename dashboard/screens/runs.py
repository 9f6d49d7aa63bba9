"""Runs: every run with its status and progress, actions, and live curves of the selected runs.

The filters sit outside the live fragment (changing them reruns the page); the table, the actions
and the curves sit inside it and redraw every ~1.5 s without rerunning the rest of the page.
"""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from dashboard import actions, charts, live, nav, run_filter, run_table
from dashboard.common import get_engine, md_plain, run_label
from db import views
from db.config import runs_root
from db.queue import live_workers
from db.run_files import discard_checkpoint, human, run_bytes, total_bytes
from db.status import QUEUED, RUNNING

STATUS_FILTER, SWEEP_FILTER = run_filter.STATUS_FILTER, run_filter.SWEEP_FILTER
TABLE = "runs_table"
CONFIRM_DELETE = "runs_confirm_delete"
MESSAGE = "runs_message"
CURVES_CACHE = "runs_curves"
CURVE_METRICS = ("train/loss", "knn/top1")
MAX_LIVE_RUNS = 12  # curves for more runs at once belong on Compare


def render() -> None:
    st.title("Runs")
    engine = get_engine()
    run_filter.restore_from_url()
    st.session_state[STATUS_FILTER] = [s for s in st.session_state.get(STATUS_FILTER, [])
                                       if s in views.DISPLAY_STATUSES]
    sweeps = {s["sweep_id"]: s["runs"] for s in views.sweeps(engine)}
    c1, c2 = st.columns(2)
    statuses = c1.multiselect("Status", list(views.DISPLAY_STATUSES), key=STATUS_FILTER,
                              help="dead: the run's heartbeat stopped (its worker or machine is gone)")
    if st.session_state.get(SWEEP_FILTER) not in ("", *sweeps):
        st.session_state[SWEEP_FILTER] = ""  # the sweep was deleted meanwhile
    sweep = c2.selectbox("Sweep", ["", *sweeps], key=SWEEP_FILTER,
                         format_func=lambda s: f"{s} ({sweeps[s]} runs)" if s else "all runs")
    view = run_filter.controls(views.all_tags(engine))
    run_filter.write_url()
    live_section(tuple(statuses), sweep, view)


@st.fragment(run_every=live.REFRESH_EVERY_S)
def live_section(statuses: tuple[str, ...], sweep: str, view: run_filter.View = run_filter.View()) -> None:
    engine = get_engine()
    runs = live.run_summaries(engine, statuses, sweep)  # one query per SHARE_S for every open tab
    runs = run_filter.apply(runs, view)
    _worker_notice(runs)
    message = st.session_state.pop(MESSAGE, None)
    if message:
        st.info(message)
    if not runs:
        st.info("No runs here yet. Launch some on the Launch page.")
        st.page_link(nav.LAUNCH.path, label="Launch", icon=":material/rocket_launch:")
        return
    disk, total = _disk_use(str(engine.url), str(runs_root()), tuple(r["id"] for r in runs))
    selected = run_table.selectable_table(TABLE, runs, disk)
    st.caption(f"Run folders take {human(total)} on disk (checkpoints and logs).")
    _actions(selected, {r["id"]: r for r in runs})
    _curves(engine, selected, runs)


@st.cache_data(ttl=10, show_spinner=False)
def _disk_use(url: str, root: str, run_ids: tuple[int, ...]) -> tuple[dict[int, int], int]:
    # Walking run folders every 1.5 s in every tab is wasted work: sizes change slowly, so all
    # sessions share one answer for 10 s. The database URL and the runs folder are in the key.
    engine = get_engine()
    return run_bytes(engine, run_ids), total_bytes(engine)


def _discard(selected: list[int]) -> None:
    engine = get_engine()
    st.session_state[MESSAGE] = "\n\n".join(discard_checkpoint(engine, run_id) for run_id in selected)
    _disk_use.clear()
    live.forget()


def _worker_notice(runs: Sequence[dict[str, Any]]) -> None:
    if any(r["status"] == QUEUED for r in runs) and not live_workers(get_engine()):
        st.warning("Runs are queued but no worker is alive. Start one with `python -m engine worker` "
                   "(the dashboard starts one itself unless SIMCLR_NO_LOCAL_WORKER=1).")


def _cancel(selected: list[int]) -> None:
    st.session_state[MESSAGE] = "\n\n".join(actions.cancel_runs(get_engine(), selected).messages)
    live.forget()


def _delete(doomed: list[int]) -> None:
    st.session_state.pop(CONFIRM_DELETE, None)
    st.session_state[MESSAGE] = "\n\n".join(actions.delete_runs(get_engine(), doomed).messages)
    live.forget()


def _actions(selected: list[int], by_id: dict[int, dict[str, Any]]) -> None:
    # Callbacks, not `if st.button(...)`: they run before the next redraw, so the table that follows
    # a click already shows its effect (and no extra rerun is needed).
    n = len(selected)
    c1, c2, c3, c5, c4 = st.columns([1, 1, 1, 1.5, 2.5])
    c1.button(f"Cancel ({n})", key="runs_cancel", disabled=not n, on_click=_cancel, args=(list(selected),),
              help="Queued runs are cancelled at once; running ones stop at their next step.")
    if c2.button("Clone", key="runs_clone", disabled=n != 1, help="Open the launch form with this run's configuration."):
        nav.clone_into_launch(by_id[selected[0]]["config"])
    c3.button(f"Delete ({n})", key="runs_delete", disabled=not n, on_click=st.session_state.__setitem__,
              args=(CONFIRM_DELETE, list(selected)),
              help="Delete the runs with their metrics, logs and checkpoints (asks first).")
    c5.button(f"Discard checkpoints ({n})", key="runs_discard", disabled=not n, on_click=_discard,
              args=(list(selected),), help="Free disk space: delete the selected runs' checkpoints (not of running "
                                           "runs). A resumed run then starts over; logs and metrics stay.")
    if n == 1:
        c4.page_link(nav.RUN.path, label=f"Open {md_plain(run_label(by_id[selected[0]]))}", query_params={"run": selected[0]},
                     icon=":material/monitoring:")
    doomed = st.session_state.get(CONFIRM_DELETE)
    if doomed:
        with st.container(border=True):
            st.warning(f"Delete run{'s' if len(doomed) > 1 else ''} {', '.join(map(str, doomed))} with their "
                       "metrics, logs and checkpoints? This cannot be undone.")
            y, k, _ = st.columns([1, 1, 4])
            y.button("Yes, delete", type="primary", key="runs_delete_confirm", on_click=_delete, args=(doomed,))
            k.button("Keep them", key="runs_delete_keep", on_click=st.session_state.pop, args=(CONFIRM_DELETE, None))


def _curves(engine: Any, selected: list[int], runs: Sequence[dict[str, Any]]) -> None:
    ids = selected or [r["id"] for r in runs if r["status"] == RUNNING]
    ids = ids[:MAX_LIVE_RUNS]
    if not ids:
        st.caption("Select runs in the table to see their curves (running runs are shown by default).")
        return
    st.caption("Curves of the selected runs" if selected else "Curves of the running runs (select rows to choose)")
    labels = {r["id"]: run_label(r) for r in runs}
    df = live.series(CURVES_CACHE, engine, sorted(ids), CURVE_METRICS,
                     charts.points_per_series(len(ids) * len(CURVE_METRICS)))
    left, right = st.columns(2)
    for col, metric in ((left, "train/loss"), (right, "knn/top1")):
        part = df[df["name"] == metric]
        with col:
            if part.empty:
                st.caption(f"{charts.METRIC_TITLES[metric]}: no points yet")
                continue
            fig = charts.line_figure(part, x="epoch", labels=labels, title=charts.METRIC_TITLES[metric])
            st.plotly_chart(fig, key=f"runs_chart_{metric}", config={"displaylogo": False})


if __name__ == "__main__":
    render()
