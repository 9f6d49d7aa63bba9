"""Runs: every run with its status, phase, progress and ETA, actions, and live curves of the selected runs.

The filters and the column chooser sit outside the live fragment (changing them reruns the page);
the table, the actions and the curves sit inside it and redraw every ~1.5 s while the tab is visible
(dashboard/poll.py), without rerunning the rest of the page. Each action says what it did; an
action that cannot apply to the selection is disabled (cancel: only queued or running runs; resume:
failed, cancelled or dead ones; delete and discard checkpoints: runs that are not live).
"""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from dashboard import actions, charts, live, nav, poll, run_filter, run_table
from dashboard.common import get_engine, md_plain, run_label
from db import views
from db.config import runs_root
from db.queue import gpus_per_worker, live_workers, too_big_message, unservable
from db.run_files import discard_checkpoint, human, run_bytes, total_bytes
from db.status import QUEUED, RUNNING

STATUS_FILTER, SWEEP_FILTER, COLUMNS = run_filter.STATUS_FILTER, run_filter.SWEEP_FILTER, "runs_columns"
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
    c1, c2, c3 = st.columns([3, 3, 1], vertical_alignment="bottom")
    statuses = c1.multiselect("Status", list(views.DISPLAY_STATUSES), key=STATUS_FILTER,
                              help="dead: the run's heartbeat stopped (its worker or machine is gone)")
    if st.session_state.get(SWEEP_FILTER) not in ("", *sweeps):
        st.session_state[SWEEP_FILTER] = ""  # the sweep was deleted meanwhile
    sweep = c2.selectbox("Sweep", ["", *sweeps], key=SWEEP_FILTER,
                         format_func=lambda s: f"{s} ({sweeps[s]} runs)" if s else "all runs")
    with c3:
        columns = run_table.column_chooser(COLUMNS)
    view = run_filter.controls(views.all_tags(engine))
    run_filter.write_url()
    live_section(tuple(statuses), sweep, tuple(columns), view)


@st.fragment
def live_section(statuses: tuple[str, ...], sweep: str, columns: tuple[str, ...],
                 view: run_filter.View = run_filter.View()) -> None:
    poll.every(live.REFRESH_EVERY_S, key="runs_poll")  # redraws while the tab is visible
    engine = get_engine()
    runs = live.run_summaries(engine, statuses, sweep)  # one query per SHARE_S for every open tab
    runs = run_filter.apply(runs, view)
    _worker_notice(runs)
    message = st.session_state.pop(MESSAGE, None)
    if message:
        st.success(message)
    if not runs:
        st.info("No runs here yet. Launch some on the Launch page.")
        st.page_link(nav.LAUNCH.path, label="Launch", icon=":material/rocket_launch:")
        return
    # Folder sizes per run only while their column is shown; the total always (under the table).
    sized = tuple(r["id"] for r in runs) if "disk MB" in columns else ()
    disk, total = _disk_use(str(engine.url), str(runs_root()), sized)
    selected = run_table.selectable_table(TABLE, runs, etas=live.etas(engine, runs), disk=disk, columns=columns)
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
    if not any(r["status"] == QUEUED for r in runs):
        return
    workers = live_workers(get_engine())
    if not workers:
        st.warning("Runs are queued but no worker is alive. Start one with `python -m engine worker --detach` "
                   "(the dashboard starts one itself unless SIMCLR_NO_LOCAL_WORKER=1).")
    elif stuck := unservable(runs, workers):
        st.warning(f"{too_big_message(stuck, gpus_per_worker(workers))}.")


def _cancel(selected: list[int]) -> None:
    st.session_state[MESSAGE] = "\n\n".join(actions.cancel_runs(get_engine(), selected).messages)
    live.forget()


def _resume(selected: list[int]) -> None:
    st.session_state[MESSAGE] = "\n\n".join(actions.resume_runs(get_engine(), selected).messages)
    live.forget()


def _delete(doomed: list[int]) -> None:
    st.session_state.pop(CONFIRM_DELETE, None)
    st.session_state[MESSAGE] = "\n\n".join(actions.delete_runs(get_engine(), doomed).messages)
    live.forget()


def _actions(selected: list[int], by_id: dict[int, dict[str, Any]]) -> None:
    # Callbacks, not `if st.button(...)`: they run before the next redraw, so the table that follows
    # a click already shows its effect (and no extra rerun is needed).
    chosen = [by_id[i] for i in selected]
    cancellable = [r["id"] for r in chosen if actions.can_cancel(r)]
    resumable = [r["id"] for r in chosen if actions.can_resume(r)]
    deletable = [r["id"] for r in chosen if actions.can_delete(r)]
    discardable = [r["id"] for r in chosen if actions.can_discard(r)]
    c1, c2, c3, c4, c5, c6 = st.columns([1, 1, 0.8, 1, 1.2, 2])
    c1.button(f"Cancel ({len(cancellable)})", key="runs_cancel", disabled=not cancellable, on_click=_cancel,
              args=(cancellable,), help="Queued runs are cancelled at once; running ones within seconds, "
                                        "keeping their last checkpoint.")
    c2.button(f"Resume ({len(resumable)})", key="runs_resume", disabled=not resumable, on_click=_resume,
              args=(resumable,), help="Queue failed, cancelled or dead runs again; they continue from their last "
                                      "checkpoint (as `train --resume`).")
    if c3.button("Clone", key="runs_clone", disabled=len(selected) != 1,
                 help="Open the launch form with this run's configuration."):
        nav.clone_into_launch(chosen[0]["config"], run_label(chosen[0]))
    c4.button(f"Delete ({len(deletable)})", key="runs_delete", disabled=not deletable,
              on_click=st.session_state.__setitem__, args=(CONFIRM_DELETE, deletable),
              help="Delete the runs with their metrics, logs and checkpoints (asks first). A running run must be "
                   "cancelled first.")
    c5.button(f"Discard ({len(discardable)})", key="runs_discard", disabled=not discardable, on_click=_discard,
              args=(discardable,), help="Discard checkpoints to free disk space: delete the selected runs' "
                                        "checkpoints (not of running runs). A resumed run then starts over; logs, "
                                        "metrics and encoder.pt stay.")
    if len(selected) == 1:
        c6.page_link(nav.RUN.path, label=f"Open {md_plain(run_label(chosen[0]))}", query_params={"run": selected[0]},
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
            title = charts.METRIC_TITLES[metric]
            fig = charts.empty_figure(title) if part.empty else \
                charts.line_figure(part, x="epoch", labels=labels, title=title)
            st.plotly_chart(fig, key=f"runs_chart_{metric}", config={"displaylogo": False})


if __name__ == "__main__":
    render()
