"""Device use over time (the sys/* metrics each run's process samples every few seconds):
utilization (GPU % where there is a GPU, else CPU %, 100 = one core) and memory, against clock time."""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import Engine

from dashboard import charts
from db import views
from db.queries import SYS_CPU, SYS_GPU_MEMORY, SYS_GPU_UTIL, SYS_MEMORY

CPU, MEMORY, GPU_UTIL, GPU_MEMORY = SYS_CPU, SYS_MEMORY, SYS_GPU_UTIL, SYS_GPU_MEMORY
NAMES = (CPU, MEMORY, GPU_UTIL, GPU_MEMORY)
SHORT = {CPU: "CPU %", MEMORY: "RAM MB", GPU_UTIL: "GPU %", GPU_MEMORY: "GPU MB"}
POINTS_PER_SERIES = 500  # samples every 5 s: 500 points is 40 minutes at full detail


def load(engine: Engine, run_ids: Sequence[int]) -> pd.DataFrame:
    if not run_ids:
        return charts.frame({})
    return charts.frame(views.metric_columns(engine, list(run_ids), NAMES, max_points=POINTS_PER_SERIES))


def figures(df: pd.DataFrame, labels: Mapping[int, str], *, height: int = 280) -> list[tuple[str, go.Figure]]:
    """[(title, figure)] for utilization and memory: GPU series where a run logged them, else CPU ones."""
    out = []
    has_gpu = GPU_UTIL in set(df["name"]) or GPU_MEMORY in set(df["name"])
    for title, (gpu, cpu) in (("Utilization (%)", (GPU_UTIL, CPU)), ("Memory (MB)", (GPU_MEMORY, MEMORY))):
        traces = []
        for (run_id, name), part in df[df["name"].isin([gpu, cpu])].groupby(["run_id", "name"], sort=True):
            if has_gpu and name == cpu and len(labels) > 1:
                continue  # on a GPU machine the GPU series are the story; one run's page shows both
            traces.append({"type": "scatter", "x": pd.to_datetime(part["time"], unit="s").to_numpy(),
                           "y": part["value"].to_numpy(), "mode": "lines" if len(part) > 1 else "markers",
                           "name": f"{labels.get(int(run_id), f'#{run_id}')} {SHORT[name]}", "line": {"width": 1.5}})
        if not traces:
            continue
        layout = {"title": {"text": title}, "height": height, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
                  "yaxis": {"rangemode": "tozero"}, "legend": {"orientation": "h", "y": -0.25},
                  "uirevision": "keep", "hovermode": "x unified" if len(traces) <= 10 else "closest"}
        out.append((title, go.Figure(data=traces, layout=layout)))
    return out


def draw(engine: Engine, run_ids: Sequence[int], labels: Mapping[int, str], key: str) -> None:
    df = load(engine, run_ids)
    figs = figures(df, labels)
    if not figs:
        st.caption("No device-use samples yet (a run records them every few seconds while it runs).")
        return
    cols = st.columns(len(figs))
    for col, (title, fig), i in zip(cols, figs, range(len(figs))):
        col.plotly_chart(fig, key=f"{key}_{i}", config={"displaylogo": False})
