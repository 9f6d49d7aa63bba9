"""Sweep analysis on Compare: how the settings that vary relate to the results.

Parallel coordinates (one axis per varying setting, then the results; one line per run, coloured
by the chosen result) and a scatter of any setting or result against a result. Text settings
(optimizer, encoder, "all" images) become evenly spaced categories on their axis.
"""

from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go
import streamlit as st

from dashboard.common import run_label
from dashboard.launch_form import value_text
from dashboard.results import varying_fields
from db.config import config_fields

RESULTS = {"linear_top1": "linear top-1", "knn_top1": "kNN top-1", "linear_loss": "linear loss",
           "final_loss": "final NT-Xent loss", "duration_s": "duration (s)"}
COLOUR, SCATTER_X, SCATTER_Y = "cmp_colour", "cmp_scatter_x", "cmp_scatter_y"


def field_value(run: dict[str, Any], name: str) -> Any:
    if name in RESULTS:
        return run.get(name)
    default = next((f.default for f in config_fields() if f.name == name), None)
    return (run.get("config") or {}).get(name, default)


def _numbers_first(text: str) -> tuple[int, float, str]:
    """Sort key: numbers in numeric order, then words in alphabetical order."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def axis(runs: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """{values, tickvals?, ticktext?}: numbers as they are; anything else as ordered categories."""
    values = [field_value(r, name) for r in runs]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"values": values}
    texts = [value_text(v) or ("all" if name == "subset_size" else "default") for v in values]
    order = sorted(set(texts), key=_numbers_first)
    code = {t: i for i, t in enumerate(order)}
    return {"values": [code[t] for t in texts], "tickvals": list(range(len(order))), "ticktext": order}


def parallel_figure(runs: Sequence[dict[str, Any]], fields: Sequence[str], results: Sequence[str],
                    colour: str) -> go.Figure:
    dims = [{"label": RESULTS.get(n, n), **axis(runs, n)} for n in (*fields, *results)]
    line = {"color": [r[colour] for r in runs], "colorscale": "Viridis", "showscale": True,
            "colorbar": {"title": {"text": RESULTS[colour]}}}
    # The colour bar sits right of the plot's domain; keep the last axis clear of it.
    return go.Figure(data=[go.Parcoords(line=line, dimensions=dims, domain={"x": [0, 0.86]})],
                     layout={"height": 420, "margin": {"l": 60, "r": 40, "t": 50, "b": 20}})


def scatter_figure(runs: Sequence[dict[str, Any]], x: str, y: str, colour: str) -> go.Figure:
    ax = axis(runs, x)
    trace = {"type": "scatter", "mode": "markers", "x": ax["values"], "y": [r[y] for r in runs],
             "text": [run_label(r) for r in runs], "hovertemplate": "%{text}<br>x %{x}<br>y %{y}<extra></extra>",
             "marker": {"size": 10, "color": [r[colour] for r in runs], "colorscale": "Viridis", "showscale": True,
                        "colorbar": {"title": {"text": RESULTS[colour]}}}}
    xaxis: dict[str, Any] = {"title": {"text": RESULTS.get(x, x)}}
    if "tickvals" in ax:
        xaxis.update(tickvals=ax["tickvals"], ticktext=ax["ticktext"])
    layout = {"height": 380, "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "xaxis": xaxis,
              "yaxis": {"title": {"text": RESULTS[y]}}}
    return go.Figure(data=[trace], layout=layout)


def section(runs: Sequence[dict[str, Any]]) -> None:
    present = [k for k in RESULTS if sum(r.get(k) is not None for r in runs) >= 2]
    if not present:
        st.caption("Sweep analysis needs at least two runs with results.")
        return
    state = st.session_state
    if state.get(COLOUR) not in present:
        state[COLOUR] = present[0]
    fields = varying_fields(runs)
    every = [f.name for f in config_fields()]
    candidates = [*fields, *[f for f in every if f not in fields], *present]
    if state.get(SCATTER_X) not in candidates:
        state[SCATTER_X] = candidates[0]
    if state.get(SCATTER_Y) not in present:
        state[SCATTER_Y] = present[0]
    c1, c2, c3 = st.columns(3)
    colour = c1.selectbox("Colour by", present, key=COLOUR, format_func=RESULTS.get)
    x = c2.selectbox("Scatter x", candidates, key=SCATTER_X, format_func=lambda n: RESULTS.get(n, n))
    y = c3.selectbox("Scatter y", present, key=SCATTER_Y, format_func=RESULTS.get)
    done = [r for r in runs if all(r.get(k) is not None for k in {colour, y})]
    if len(done) < len(runs):
        st.caption(f"{len(runs) - len(done)} of the {len(runs)} runs have no {RESULTS[colour]} or "
                   f"{RESULTS[y]} yet and are left out.")
    left, right = st.columns([3, 2])
    shown = [k for k in present if all(r.get(k) is not None for r in done)]
    with left:
        if fields:
            st.plotly_chart(parallel_figure(done, fields, shown, colour), key="cmp_parallel",
                            config={"displaylogo": False})
        else:
            st.caption("The chosen runs share every setting: nothing for parallel coordinates to spread.")
    right.plotly_chart(scatter_figure(done, x, y, colour), key="cmp_scatter", config={"displaylogo": False})
