"""What the encoder learned, on a finished run's page, from the run's insights.npz.

The run's process computed everything once at its end (engine/simclr/insights.py); this module
only lays the stored arrays out: two grids of nearest neighbours (trained encoder, untrained
encoder) and the 2-D map of the test features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.files import run_file
from db.config import INSIGHTS_FILE

TILE_PX = 64  # thumbnails are drawn at least this big (CIFAR images are 32 px)
MATCH, MISMATCH, QUERY, BACKGROUND = (46, 160, 67), (215, 58, 73), (120, 120, 120), (255, 255, 255)


@st.cache_data(show_spinner=False, max_entries=16)
def load(path: str, mtime: float) -> dict[str, np.ndarray]:  # mtime: a rewritten file is read again
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _tile(image: np.ndarray, colour: tuple[int, int, int], scale: int, border: int = 3) -> np.ndarray:
    big = image.repeat(scale, axis=0).repeat(scale, axis=1)
    out = np.empty((big.shape[0] + 2 * border, big.shape[1] + 2 * border, 3), dtype=np.uint8)
    out[:] = colour
    out[border:-border, border:-border] = big
    return out


def grid(queries: np.ndarray, neighbours: np.ndarray, same: np.ndarray, gap: int = 4) -> np.ndarray:
    """One row per query: the query (grey frame), a gap, then its neighbours (green frame: same class)."""
    scale = max(1, -(-TILE_PX // queries.shape[1]))
    rows = []
    for q, nbrs, ok in zip(queries, neighbours, same):
        tiles = [_tile(q, QUERY, scale), np.full((1, 3 * gap, 3), BACKGROUND, np.uint8)]
        for img, match in zip(nbrs, ok):
            tiles += [_tile(img, MATCH if match else MISMATCH, scale), np.full((1, gap, 3), BACKGROUND, np.uint8)]
        height = tiles[0].shape[0]
        rows.append(np.concatenate([np.broadcast_to(t, (height, t.shape[1], 3)) for t in tiles], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), BACKGROUND, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def map_figure(data: dict[str, np.ndarray]) -> go.Figure:
    classes = [str(c) for c in data["classes"]]
    xy, labels, explained = data["map_xy"], data["map_label"], data["map_explained"]
    traces = []
    for c in np.unique(labels):
        pick = labels == c
        traces.append({"type": "scattergl", "mode": "markers", "x": xy[pick, 0], "y": xy[pick, 1],
                       "name": classes[c] if c < len(classes) else str(c), "marker": {"size": 5, "opacity": 0.75},
                       "text": [f"test image {i}" for i in data["map_index"][pick]],
                       "hovertemplate": "%{text}<extra>%{fullData.name}</extra>"})
    layout = {"height": 460, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
              "title": {"text": f"Test features, first two principal components "
                                f"({explained[0]:.0%} + {explained[1]:.0%} of the variance)"},
              "xaxis": {"title": {"text": "PC 1"}, "zeroline": False},
              "yaxis": {"title": {"text": "PC 2"}, "zeroline": False}, "legend": {"itemsizing": "constant"}}
    return go.Figure(data=traces, layout=layout)


def section(run: dict[str, Any]) -> None:
    path = run_file(run["id"], INSIGHTS_FILE)
    st.subheader("What the encoder learned")
    if path is None:
        st.caption("Nearest neighbours and a map of the features appear here when the run completes "
                   "(computed once, by the run itself)." if run["status"] != "completed"
                   else "This run left no insights.npz (runs from before this feature, or see the end of its log).")
        return
    data = load(str(path), Path(path).stat().st_mtime)
    k = int(data["k"])
    classes = [str(c) for c in data["classes"]]
    share = {name: float((data[f"{name}_label"] == data["query_label"][:, None]).mean())
             for name in ("trained", "untrained")}
    st.caption(f"Each row: a test image (grey frame), then its {k} most similar of {len(data['bank_index'])} "
               f"training images by cosine similarity of the encoder's features; a green frame means the same "
               f"class, red another. Rows: {', '.join(classes[c] for c in data['query_label'])}.")
    left, right = st.columns(2)
    for col, name, title in ((left, "trained", "Trained encoder"),
                             (right, "untrained", "Untrained encoder (random init, same seed)")):
        same = data[f"{name}_label"] == data["query_label"][:, None]
        col.image(grid(data["query_images"], data[f"{name}_images"], same),
                  caption=f"{title}: {share[name]:.0%} of the neighbours share the query's class")
    st.plotly_chart(map_figure(data), key="insights_map", config={"displaylogo": False})
