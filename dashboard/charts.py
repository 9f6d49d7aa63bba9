"""Curves: metric rows -> pandas -> plotly, downsampled on the server.

A browser drawing 50 runs x 10,000 points as SVG freezes; no screen has 10,000 pixels across. So
every series is cut to a point budget before it leaves the server: in SQL when loading history
(db.views.metric_columns(max_points=...)) and here, with the same every-k-th-step rule, for rows
already in memory (live caches that keep growing). The newest point of a series is always kept,
so a live curve ends where the run is.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from db.views import METRIC_COLUMNS

# Points per chart across all its series; each series gets a share, but never fewer than this.
CHART_POINT_BUDGET = 10_000
MIN_POINTS_PER_SERIES = 200

X_AXES: dict[str, str] = {"step": "step", "epoch": "epoch", "images seen": "images_seen", "wall time": "wall_min"}
X_TITLES = {"step": "step", "epoch": "epoch", "images seen": "images seen", "wall time": "wall time (min)"}
METRIC_TITLES = {"train/loss": "NT-Xent loss (per step)", "epoch/loss": "NT-Xent loss (epoch mean)",
                 "knn/top1": "kNN top-1 accuracy", "linear/top1": "linear top-1 accuracy",
                 "linear/loss": "linear classifier loss", "train/lr": "learning rate",
                 "train/images_per_sec": "images / s"}


def points_per_series(n_series: int, budget: int = CHART_POINT_BUDGET) -> int:
    return max(MIN_POINTS_PER_SERIES, budget // max(1, n_series))


def frame(columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Metric columns (db.views.metric_columns) as a typed frame."""
    df = pd.DataFrame({c: columns.get(c, []) for c in METRIC_COLUMNS})
    return df.astype({"id": "int64", "run_id": "int64", "step": "int64", "epoch": "float64",
                      "value": "float64", "time": "float64"})


def downsample(df: pd.DataFrame, max_points: int, by: Sequence[str] = ("run_id", "name")) -> pd.DataFrame:
    """At most ~max_points rows per series: every k-th row (k from the series' length) plus its last.

    Expects rows sorted by series then step (as db.views returns them).
    """
    if df.empty:
        return df
    groups = df.groupby(list(by), sort=False)
    size = groups["step"].transform("size").to_numpy()
    if size.max() <= max_points:
        return df
    position = groups.cumcount().to_numpy()
    stride = np.ceil(size / max_points).astype(np.int64)
    keep = (position % stride == 0) | (position == size - 1)
    return df[keep]


def add_x(df: pd.DataFrame, runs: Mapping[int, Mapping[str, Any]]) -> pd.DataFrame:
    """Add the other x axes: images seen (step x the run's batch) and wall time since the run's first row."""
    df = df.copy()
    batch = df["run_id"].map({rid: r.get("batch_size") or 0 for rid, r in runs.items()}).fillna(0)
    df["images_seen"] = df["step"] * batch.astype("int64")
    start = df.groupby("run_id")["time"].transform("min")
    df["wall_min"] = (df["time"] - start) / 60.0
    return df


def smooth(df: pd.DataFrame, weight: float, by: Sequence[str] = ("run_id", "name")) -> pd.DataFrame:
    """TensorBoard-style exponential smoothing, 0 (none) .. 0.99, per series, bias-corrected at the start."""
    if weight <= 0 or df.empty:
        return df
    df = df.copy()
    df["value"] = df.groupby(list(by), sort=False)["value"].transform(
        lambda s: s.ewm(alpha=1.0 - weight, adjust=True).mean())
    return df


def _figure(traces: list[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    # _validate=False: plotly's per-property validation costs more than everything else on a
    # 50-trace chart, and these traces are built here from numeric arrays, not user input.
    return go.Figure(data=traces, layout=layout, _validate=False)


ACCURACY_METRICS = ("knn/top1", "linear/top1")
# A few curves: the legend in a row above the plot (below it, it covers the x axis title). More:
# a column on the right, which grows downwards instead of up into the title.
LEGEND_ABOVE = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}
LEGEND_RIGHT = {"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02}
MAX_LEGEND_ABOVE = 4


def _axis_range(values: np.ndarray) -> list[float] | None:
    """A sensible range when all values are one number (one point, or a flat line): plotly would
    otherwise zoom into a sliver around it, with fractional ticks. None: let plotly choose."""
    finite = values[np.isfinite(values)] if len(values) else values
    if len(finite) == 0 or finite.min() != finite.max():
        return None
    v = float(finite[0])
    return [0.0, 2 * v] if v > 0 else [2 * v, 0.0] if v < 0 else [-1.0, 1.0]


def _layout(title: str, height: int, x_title: str, y_title: str, n_traces: int) -> dict[str, Any]:
    return {
        "title": {"text": title, "y": 0.98, "yanchor": "top"}, "height": height,
        "margin": {"l": 10, "r": 10, "t": 70 if title else 30, "b": 10},
        "xaxis": {"title": {"text": x_title}}, "yaxis": {"title": {"text": y_title}},
        "legend": LEGEND_ABOVE if n_traces <= MAX_LEGEND_ABOVE else LEGEND_RIGHT, "showlegend": True,  # also for one trace: every curve carries its run's name
        # a constant uirevision keeps the user's zoom and hidden traces when a live chart redraws
        "uirevision": "keep", "hovermode": "x unified" if n_traces <= 10 else "closest",
    }


def line_figure(df: pd.DataFrame, *, x: str = "step", labels: Mapping[int, str] | None = None,
                title: str = "", y_title: str = "", log_y: bool = False, height: int = 360,
                by_name: bool = False) -> go.Figure:
    """One line per run (or per metric name when by_name), already downsampled.

    Accuracy curves get a 0..1 axis (comparable at a glance across charts); a single point gets
    an axis from zero instead of a sliver around it.
    """
    column = X_AXES.get(x, x)
    key = "name" if by_name else "run_id"
    traces = []
    for series_key, part in df.groupby(key, sort=True):
        name = str(series_key) if by_name else (labels or {}).get(int(series_key), f"#{series_key}")
        traces.append({"type": "scatter", "x": part[column].to_numpy(), "y": part["value"].to_numpy(), "name": name,
                       "mode": "lines" if len(part) > 1 else "markers", "line": {"width": 1.5},
                       "hovertemplate": f"{name}<br>%{{x}}: %{{y:.4g}}<extra></extra>"})
    layout = _layout(title, height, X_TITLES.get(x, x), y_title, len(traces))
    if not df.empty and set(df["name"]) <= set(ACCURACY_METRICS):
        layout["yaxis"]["range"] = [0.0, 1.0]
    elif log_y:
        layout["yaxis"]["type"] = "log"
    elif (y_range := _axis_range(df["value"].to_numpy(dtype=float))) is not None:
        layout["yaxis"]["range"] = y_range
    if not df.empty and (x_range := _axis_range(df[column].to_numpy(dtype=float))) is not None:
        layout["xaxis"]["range"] = x_range
        if float(df[column].iloc[0]).is_integer():  # steps, images: no tick at step 0.5
            layout["xaxis"]["dtick"] = max(1, round(x_range[1] / 4))
    return _figure(traces, layout)


def empty_figure(title: str, message: str = "no points yet", height: int = 360) -> go.Figure:
    """A chart's frame with a message in it: the page keeps its layout while a curve has no points."""
    layout = _layout(title, height, "", "", 0)
    layout.update(showlegend=False, xaxis={"visible": False}, yaxis={"visible": False},
                  annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper",
                                "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "gray"}}])
    return _figure([], layout)


def accuracy_figure(table: pd.DataFrame, x_key: str, line_key: str | None, x_title: str,
                    title: str = "") -> go.Figure:
    """Linear top-1 against a row key (e.g. data subset or epochs), one line per value of another
    (e.g. batch size), error bars = std over seeds."""
    traces = []
    table = table[table[x_key].notna()].sort_values(x_key)
    groups = table.groupby(line_key, sort=True) if line_key else [(None, table)]
    for value, part in groups:
        std = part["accuracy_std"]
        traces.append({"type": "scatter", "x": part[x_key].astype("float64").to_numpy(),
                       "y": part["accuracy_mean"].to_numpy(), "mode": "lines+markers",
                       "name": f"{line_key.replace('_size', '')} {value}" if line_key else "accuracy",
                       "error_y": {"type": "data", "array": std.fillna(0).to_numpy(), "visible": bool(std.notna().any())}})
        if "baseline_accuracy" in part:
            traces.append({"type": "scatter", "x": part[x_key].astype("float64").to_numpy(),
                           "y": part["baseline_accuracy"].to_numpy(), "mode": "lines+markers",
                           "line": {"dash": "dot"},
                           "name": f"baseline, {line_key.replace('_size', '')} {value}" if line_key else "baseline"})
    layout = _layout(title, 340, x_title, "linear top-1 accuracy", len(traces))
    layout["yaxis"]["range"] = [0.0, 1.0]
    if (x_range := _axis_range(table[x_key].astype("float64").to_numpy())) is not None:
        layout["xaxis"]["range"] = x_range
    return _figure(traces, layout)
