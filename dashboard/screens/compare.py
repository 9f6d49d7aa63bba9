"""Compare: runs side by side. Results table (the seed experiment's layout), overlaid curves, config diff.

Pick runs (deep link ?runs=3,4,5) or a whole sweep (?sweep=ID); the address bar follows the view
(also &metric=, &x=, &colour=), so a copied link restores it. Not live on purpose: comparisons
are of finished runs, and a table that reorders itself under the reader is no help.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import streamlit as st

from dashboard import charts, results, sweep_analysis
from dashboard.common import get_engine, prepared_download, run_label
from db import views
from db.baseline import baseline_table
from db.status import COMPLETED

MODE, SWEEP, RUNS, ROW_KEYS = "cmp_mode", "cmp_sweep", "cmp_runs", "cmp_row_keys"
METRIC, X_AXIS, SMOOTH, LOG_Y = "cmp_metric", "cmp_x", "cmp_smooth", "cmp_log"
DEFAULT_RUNS = 24  # with nothing chosen, the newest completed runs
URL_SETTINGS = {"metric": METRIC, "x": X_AXIS, "colour": sweep_analysis.COLOUR}


def _init_from_url(labels: dict[int, str], sweeps: dict[str, int]) -> None:
    state = st.session_state
    if MODE in state:
        return
    sweep = st.query_params.get("sweep")
    wanted = [int(t) for t in st.query_params.get("runs", "").split(",") if t.strip().isdigit()]
    # The view's other settings, as a shared link left them (each is checked where it is drawn).
    for param, key in URL_SETTINGS.items():
        if param in st.query_params:
            state[key] = st.query_params[param]
    if state.get(X_AXIS) not in (None, *charts.X_AXES):
        del state[X_AXIS]
    if sweep in sweeps:
        state[MODE], state[SWEEP] = "Sweep", sweep
        return
    state[MODE] = "Runs"
    state[RUNS] = [i for i in wanted if i in labels] or [
        r["id"] for r in views.run_summaries(get_engine(), status=[COMPLETED])[:DEFAULT_RUNS]]


def _pick(engine: Any) -> list[int]:
    labels = views.run_labels(engine)
    sweeps = {s["sweep_id"]: s["runs"] for s in views.sweeps(engine)}
    _init_from_url(labels, sweeps)
    mode = st.radio("Compare", ["Runs", "Sweep"], horizontal=True, key=MODE)
    if mode == "Sweep":
        if not sweeps:
            st.info("No sweeps yet: launch one in grid mode.")
            return []
        if st.session_state.get(SWEEP) not in sweeps:
            st.session_state[SWEEP] = next(iter(sweeps))
        sweep = st.selectbox("Sweep", list(sweeps), key=SWEEP, format_func=lambda s: f"{s} ({sweeps[s]} runs)")
        _set_url(sweep=sweep, runs=None)
        return sorted(views.run_ids(engine, sweep_id=sweep))
    st.session_state[RUNS] = [i for i in st.session_state.get(RUNS, []) if i in labels]
    chosen = sorted(st.multiselect("Runs", list(labels), key=RUNS, format_func=lambda i: labels[i]))
    _set_url(sweep=None, runs=",".join(map(str, chosen)) or None)
    return chosen


def _set_url(**params: str | None) -> None:
    """Keep the address bar in step with the view (None removes a parameter)."""
    for name, text in params.items():
        if text is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != text:
            st.query_params[name] = text


def _curves(engine: Any, runs: Sequence[dict[str, Any]]) -> None:
    ids = [r["id"] for r in runs]
    names = views.metric_names(engine, ids)
    if not names:
        st.caption("No metrics logged yet.")
        return
    c1, c2, c3, c4 = st.columns([3, 3, 2, 1])
    if st.session_state.get(METRIC) not in names:
        st.session_state[METRIC] = "train/loss" if "train/loss" in names else names[0]
    metric = c1.selectbox("Metric", names, key=METRIC, format_func=lambda n: f"{n} ({charts.METRIC_TITLES.get(n, n)})")
    x = c2.radio("x axis", list(charts.X_AXES), horizontal=True, key=X_AXIS)
    weight = c3.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key=SMOOTH, help="exponential moving average weight")
    log_y = c4.toggle("log y", key=LOG_Y)
    by_id = {r["id"]: r for r in runs}
    budget = charts.points_per_series(len(ids))
    df = charts.frame(views.metric_columns(engine, ids, [metric], max_points=budget))
    df = charts.smooth(charts.add_x(df, by_id), weight)
    fig = charts.line_figure(df, x=x, labels={i: run_label(r) for i, r in by_id.items()},
                             title=charts.METRIC_TITLES.get(metric, metric), log_y=log_y, height=420)
    st.plotly_chart(fig, key="cmp_chart", config={"displaylogo": False})
    _set_url(metric=metric, x=x)

    def full_csv() -> bytes:
        # Every point, not the drawn sample.
        full = charts.add_x(charts.frame(views.metric_columns(engine, ids, [metric])), by_id)
        full.insert(1, "run", full["run_id"].map(lambda i: run_label(by_id[i])))
        return full.drop(columns=["id"]).rename(columns={"wall_min": "wall_time_min"}).to_csv(index=False).encode()

    prepared_download("cmp_curves_csv", "curves (CSV, every point)", full_csv,
                      file_name=f"curves-{metric.replace('/', '_')}.csv", mime="text/csv",
                      signature=(tuple(ids), metric, views.max_metric_id(engine)))


def _row_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The reader's choice of row keys among the fields that vary; by default all of them."""
    choices = results.row_key_choices(runs)
    if len(choices) < 2:
        return results.default_row_keys(runs)
    # A new selection of runs (other varying fields) starts again from the default.
    signature = (ROW_KEYS + "_for", tuple(choices))
    if st.session_state.get(signature[0]) != signature[1]:
        st.session_state[signature[0]] = signature[1]
        st.session_state[ROW_KEYS] = results.default_row_keys(runs)
    picked = st.multiselect("Rows keyed by", choices, key=ROW_KEYS,
                            help="Fields that vary among these runs. Those not picked split the table instead; "
                                 "runs differing only in their seed share a row.")
    return [k for k in choices if k in picked] or results.default_row_keys(runs)


def _results_tables(runs: Sequence[dict[str, Any]]) -> None:
    row_keys = _row_keys(runs)
    tables = results.result_tables(runs, row_keys)
    if not tables:
        st.caption("No run here has linear-probe results yet (they are computed when a run completes).")
        return
    probes = results.probes_used(runs)
    if len(probes) > 1:
        st.warning(f"These runs were probed differently ({', '.join(probes)}): linear losses and accuracies of "
                   "different probes are not comparable, so each probe has its own tables.")
    st.caption("Linear classifier on frozen features, test set: loss and top-1 accuracy (probe: "
               f"{', '.join(probes)}). Runs differing only in seed share a cell: mean ± std (n-1).")
    if any(t.baseline for t in tables):
        st.caption(f"Baseline: the seed experiment's published numbers, {baseline_table().source}")
    for i, table in enumerate(tables):
        st.markdown(f"**{table.title}**")
        left, right = st.columns([3, 2])
        # st.table, not st.dataframe: a small, printed table in the baseline experiment's layout
        index = list(table.display.columns[: len(table.row_keys)])
        left.table(table.display.set_index(index))
        x_key = table.row_keys[0]
        if pd.api.types.is_numeric_dtype(table.numbers[x_key].dropna().infer_objects()) and len(table.numbers) > 1:
            line_key = table.row_keys[1] if len(table.row_keys) > 1 else None
            x_title = results.ROW_LABELS.get(x_key, x_key)
            right.plotly_chart(charts.accuracy_figure(table.numbers, x_key, line_key, x_title,
                                                      f"accuracy vs {x_title}"),
                               key=f"cmp_results_chart_{i}", config={"displaylogo": False})
    st.download_button("Download table (CSV)", data=results.tables_csv(tables), file_name="results.csv",
                       mime="text/csv", key="cmp_table_csv", on_click="ignore")


def render() -> None:
    st.title("Compare")
    engine = get_engine()
    ids = _pick(engine)
    if not ids:
        st.info("Pick runs or a sweep to compare.")
        return
    runs = views.run_summaries(engine, ids=ids)
    st.subheader("Results")
    _results_tables(runs)
    st.subheader("Curves")
    _curves(engine, runs)
    st.subheader("Sweep analysis")
    sweep_analysis.section(runs)
    _set_url(colour=st.session_state.get(sweep_analysis.COLOUR))
    st.subheader("Configuration differences")
    diff = results.config_diff(runs)
    if diff.empty:
        st.caption("All chosen runs have the same configuration." if len(runs) > 1 else "One run chosen.")
    else:
        # One row per run, one column per differing field: long run names sit in one wide first
        # column instead of heading (and being cut in) narrow columns; the short field names head them.
        st.dataframe(diff.T, key="cmp_config_diff",
                     column_config={"_index": st.column_config.TextColumn("run", width="large")})


if __name__ == "__main__":
    render()
