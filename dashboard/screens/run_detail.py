"""Run detail (deep link ?run=ID): status, phase and ETA, error with its traceback folded, tags and
note, curves, device use, log tail, checkpoint and encoder downloads, what the encoder learned,
configuration; cancel, resume and clone."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import actions, annotate, artifacts_view, charts, device_use, insights_view, live, nav, poll
from dashboard.common import fmt_duration, fmt_time, get_engine, md_plain, plain_heading, run_label
from dashboard.files import under_runs
from dashboard.launch_form import value_text
from db import executor, views
from db.config import stored_value
from db.status import FAILED, FINISHED, QUEUED, RUNNING

LOG_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 200
CACHE = "run_detail_curves"
CHARTS = (("Loss", ("train/loss", "epoch/loss")), ("kNN top-1", ("knn/top1",)),
          ("Learning rate", ("train/lr",)), ("Images / s", ("train/images_per_sec",)))


def _chosen_run() -> int | None:
    """The run named by ?run=ID, else one picked here (and then written into the URL)."""
    labels = views.run_labels(get_engine())
    if not labels:
        st.info("No runs yet.")
        return None
    param = st.query_params.get("run")
    # isdecimal, not isdigit: "²" is a digit to Python but not a number int() reads.
    run_id = int(param) if param and param.isascii() and param.isdecimal() and len(param) < 19 else None
    if param and run_id not in labels:
        st.error(f"There is no run with id {param}; pick one below.")
        run_id = None
    options = list(labels)
    choice = st.selectbox("Run", options, index=options.index(run_id) if run_id in labels else 0,
                          format_func=lambda i: labels[i])
    if str(choice) != param:
        st.query_params["run"] = str(choice)
    return choice


def tail(path: str | None, max_bytes: int = LOG_TAIL_BYTES, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last lines of a log without reading it all (logs of long runs grow large).

    Only a file under the runs folder is read: the path comes from a database row."""
    safe = under_runs(path)
    if safe is None:
        return None
    with open(safe, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


TRACEBACK_START = "Traceback (most recent call last):"
TRACEBACK_LINES = 30


def traceback_tail(log: str | None, max_lines: int = TRACEBACK_LINES) -> str | None:
    """The last traceback in a log, cut to its last `max_lines` lines (the innermost frames and the
    exception, which is where the cause is), or None if the log has none."""
    if not log or TRACEBACK_START not in log:
        return None
    lines = log[log.rindex(TRACEBACK_START):].splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line and not line.startswith((" ", "\t"))), len(lines) - 1)
    lines = lines[:end + 1]  # up to the exception line; what follows is the runner's own messages
    if len(lines) > max_lines:
        lines = [lines[0], f"  ... ({len(lines) - max_lines} lines of outer frames left out)", *lines[-(max_lines - 2):]]
    return "\n".join(lines)


def _status(run: dict[str, Any], eta: float | None = None) -> None:
    status = run["display_status"]
    line = f"**Status:** {status}"
    live_now = status in (RUNNING, views.CANCELLING)  # a dead run is doing nothing, and has no ETA
    if live_now and run.get("phase"):
        line += f" · {run['phase']}"
    if live_now and eta is not None:
        line += f" · about {fmt_duration(eta)} left"
    if run.get("device"):
        line += f" · device {run['device']}"
    if run.get("attempts"):
        line += f" · attempt {run['attempts']}"
    if run.get("sweep_id"):
        line += f" · sweep {run['sweep_id']}"
    st.markdown(line)
    if run.get("executor"):
        link = executor.ray_job_link(run["executor"])
        st.markdown(f"**Executes on:** {executor.label(run['executor'])}" +
                    (f" · [Ray dashboard]({link})" if link else ""))
    st.progress(run["progress"], text=f"{run['progress']:.0%}")
    if status == views.DEAD:
        st.error(f"No heartbeat for {fmt_duration(run['heartbeat_age_s'])}: its worker or machine is gone. "
                 "A live worker requeues or fails it; if none is running, start one.")
    if run.get("error"):
        (st.warning if run["status"] == "cancelled" else st.error)(md_plain(run["error"]))
        trace = traceback_tail(tail(run.get("log_path"))) if run["status"] == FAILED else None
        if trace:
            with st.expander("Traceback (the end of it, from the log)"):
                st.code(trace, language="python")
    c = st.columns(5)
    c[0].metric("Loss (latest)", _num(run.get("latest_loss")))
    c[1].metric("kNN top-1", _num(run.get("knn_top1")))
    probe = stored_value(run.get("config"), "probe")
    c[2].metric("Linear loss", _num(run.get("linear_loss")), help=f"linear probe: {probe}")
    c[3].metric(f"Linear top-1 ({probe} probe)", _num(run.get("linear_top1")), help=f"linear probe: {probe}")
    c[4].metric("Duration", fmt_duration(run.get("duration_s")) or "-")
    st.caption(f"created {fmt_time(run['created_at'])} · started {fmt_time(run['started_at']) or '-'} · "
               f"finished {fmt_time(run['finished_at']) or '-'}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _live(run_id: int, active: bool) -> None:
    if active:  # a finished run's page does not poll
        poll.every(live.REFRESH_EVERY_S, key=f"run_detail_poll_{run_id}")
    engine = get_engine()
    found = views.run_summaries(engine, ids=[run_id])
    if not found:
        st.warning(f"Run {run_id} no longer exists.")
        return
    run = found[0]
    _status(run, live.etas(engine, [run]).get(run_id))
    names = [n for _, group in CHARTS for n in group]
    df = live.series(f"{CACHE}_{run_id}", engine, [run_id], names, charts.points_per_series(1))
    cols = st.columns(2)
    for i, (title, group) in enumerate(CHARTS):
        part = df[df["name"].isin(group)]
        with cols[i % 2]:
            fig = charts.empty_figure(title, height=300) if part.empty else \
                charts.line_figure(part, x="step", title=title, by_name=True, height=300)
            st.plotly_chart(fig, key=f"run_chart_{i}", config={"displaylogo": False})
    st.subheader("Device use")
    device_use.draw(engine, [run_id], {run_id: run_label(run)}, "run_use")
    text = tail(run.get("log_path"))
    # Open while the run runs (that is when people watch it); folded once it has ended.
    with st.expander("Log", expanded=run["status"] == RUNNING):
        if text is None:
            st.caption("No log yet: a Ray job's output is saved here when the job ends (until then it is on the Ray "
                       "dashboard)." if (run.get("executor") or "").startswith("ray job") else
                       "No log yet (a worker writes it when the run starts).")
        else:
            st.caption(run["log_path"])
            st.code(text, language=None)
    # The page was drawn while the run was live; once it ends, one full rerun stops the polling.
    if st.session_state.get(f"run_detail_live_{run_id}") and run["status"] in FINISHED:
        st.session_state.pop(f"run_detail_live_{run_id}")
        st.rerun(scope="app")


MESSAGE = "run_detail_message"


def _act(action: Any, run_id: int) -> None:
    """A button's callback: do it, and keep what it said for the redraw that follows."""
    st.session_state[MESSAGE] = "\n\n".join(action(get_engine(), [run_id]).messages)


def render() -> None:
    st.title("Run detail")
    run_id = _chosen_run()
    if run_id is None:
        return
    engine = get_engine()
    run = views.run_summaries(engine, ids=[run_id])[0]
    plain_heading(run_label(run))
    annotate.show(run)
    message = st.session_state.pop(MESSAGE, None)
    if message:
        st.success(message)
    c1, c2, c3, _ = st.columns([1, 1, 1, 3])
    c1.button("Cancel", key="detail_cancel", disabled=not actions.can_cancel(run), on_click=_act,
              args=(actions.cancel_runs, run_id), help="Queued: cancelled at once; running: within seconds.")
    c2.button("Resume", key="detail_resume", disabled=not actions.can_resume(run), on_click=_act,
              args=(actions.resume_runs, run_id),
              help="Queue it again to continue from its last checkpoint (failed, cancelled or dead runs).")
    if c3.button("Clone", key="detail_clone", help="Open the launch form with this configuration."):
        nav.clone_into_launch(run["config"], run_label(run))
    annotate.editor(run)

    active = run["status"] in (QUEUED, RUNNING)
    st.session_state[f"run_detail_live_{run_id}"] = active
    st.fragment(_live)(run_id, active)
    artifacts_view.checkpoint_section(run)
    insights_view.section(run)

    with st.expander("Configuration", expanded=False):
        cfg = run.get("config") or {}
        st.dataframe(pd.DataFrame({"field": list(cfg), "value": [value_text(v) or "(default)" for v in cfg.values()]}),
                     hide_index=True, key="detail_config")


if __name__ == "__main__":
    render()
