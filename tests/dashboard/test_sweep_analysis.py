"""Sweep analysis on Compare (parallel coordinates, scatter) and Compare's shareable URL."""

from __future__ import annotations

import json

from sqlalchemy import Engine

from dashboard.sweep_analysis import axis
from tests.dashboard.dash_helpers import add_run


def _param(at, name: str) -> str:  # noqa: ANN001
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else value


def test_axis_keeps_numbers_and_orders_categories() -> None:
    runs = [{"config": {"subset_size": s, "optimizer": o}} for s, o in ((1000, "sgd"), (None, "lars"), (300, "adam"))]
    assert axis(runs, "optimizer") == {"values": [2, 1, 0], "tickvals": [0, 1, 2], "ticktext": ["adam", "lars", "sgd"]}
    sub = axis(runs, "subset_size")  # "all" (None) cannot be a number: categories, numbers in numeric order
    assert sub["ticktext"] == ["300", "1000", "all"] and sub["values"] == [1, 2, 0]
    assert axis([{"config": {"batch_size": 64}}, {"config": {"batch_size": 256}}], "batch_size") == {"values": [64, 256]}


def test_parallel_coordinates_and_scatter_for_a_sweep_with_a_shareable_link(app, db: Engine) -> None:
    for i, (batch, opt) in enumerate(((64, "lars"), (128, "adam"), (256, "lars"))):
        add_run(db, status="completed", sweep_id="sweep-a", batch_size=batch, optimizer=opt,
                linear_top1=0.3 + i / 10, knn_top1=0.2 + i / 10, linear_loss=2 - i / 10)
    add_run(db, status="running", sweep_id="sweep-a", batch_size=32)  # no results yet: left out, and said so
    at = app("compare", sweep="sweep-a", colour="knn_top1")
    spec = {c.proto.id.rsplit("-", 1)[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    dims = {d["label"]: d for d in spec["cmp_parallel"]["data"][0]["dimensions"]}
    assert set(dims) >= {"batch_size", "optimizer", "linear top-1", "kNN top-1"}
    assert dims["optimizer"]["ticktext"] == ["adam", "lars"]
    line = spec["cmp_parallel"]["data"][0]["line"]
    assert line["colorbar"]["title"]["text"] == "kNN top-1"
    assert any("1 of the 4 runs have no kNN top-1" in c.value for c in at.caption)
    at.selectbox(key="cmp_scatter_x").set_value("optimizer").run()
    scatter = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("cmp_scatter")).proto.spec)
    assert scatter["layout"]["xaxis"]["ticktext"] == ["adam", "lars"]
    assert (_param(at, "sweep"), _param(at, "colour")) == ("sweep-a", "knn_top1")
    assert "runs" not in at.query_params


def test_picked_runs_go_into_the_link(app, db: Engine) -> None:
    a, b = (add_run(db, status="completed", linear_top1=0.5) for _ in range(2))
    at = app("compare", runs=str(a), x="epoch")
    assert at.multiselect(key="cmp_runs").value == [a]
    at.multiselect(key="cmp_runs").set_value([a, b]).run()
    assert _param(at, "runs") == f"{a},{b}"
