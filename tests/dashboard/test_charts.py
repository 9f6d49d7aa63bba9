"""dashboard/charts.py: downsampling and smoothing of curves in pandas."""

from __future__ import annotations

import pandas as pd

from dashboard import charts


def test_pandas_downsample_matches_the_budget_and_keeps_last() -> None:
    df = pd.DataFrame({"run_id": [1] * 1000 + [2] * 10, "name": "train/loss",
                       "step": list(range(1000)) + list(range(10)), "value": 0.0})
    out = charts.downsample(df, 100)
    one = out[out.run_id == 1]
    assert len(one) <= 101 and one["step"].iloc[-1] == 999
    assert len(out[out.run_id == 2]) == 10


def test_smoothing_is_per_series() -> None:
    df = pd.DataFrame({"run_id": [1, 1, 1, 2, 2], "name": "x", "step": [1, 2, 3, 1, 2],
                       "value": [0.0, 10.0, 10.0, 5.0, 5.0]})
    out = charts.smooth(df, 0.5)
    assert out[out.run_id == 2]["value"].tolist() == [5.0, 5.0]  # not pulled towards run 1
    assert 0 < out[out.run_id == 1]["value"].iloc[1] < 10


def _series(name: str, steps: list[int], values: list[float], run_id: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"id": range(len(steps)), "run_id": run_id, "name": name, "step": steps,
                         "epoch": [float(s) for s in steps], "value": values, "time": 0.0})


def test_accuracy_axes_run_from_0_to_1_and_every_curve_is_named() -> None:
    fig = charts.line_figure(_series("knn/top1", [1, 2, 3], [0.2, 0.3, 0.35]), labels={1: "#1 tiny"})
    assert list(fig.layout.yaxis.range) == [0.0, 1.0]
    assert fig.layout.showlegend is True and fig.data[0].name == "#1 tiny"  # named even when it is alone
    assert "#1 tiny" in fig.data[0].hovertemplate
    assert fig.layout.legend.y > 1  # above the plot: it cannot cover the x axis title
    many = pd.concat([_series("knn/top1", [1, 2], [0.1, 0.2], run_id=i) for i in range(8)])
    assert charts.line_figure(many).layout.legend.x > 1  # many curves: a column on the right, clear of the title
    assert list(charts.accuracy_figure(pd.DataFrame(
        {"subset_size": [300], "batch_size": [64], "accuracy_mean": [0.4], "accuracy_std": [float("nan")]}
    ), "subset_size", "batch_size", "data subset (images)").layout.yaxis.range) == [0.0, 1.0]


def test_a_single_point_gets_axes_from_zero() -> None:
    fig = charts.line_figure(_series("train/loss", [5], [4.2]))
    assert list(fig.layout.xaxis.range) == [0.0, 10.0] and list(fig.layout.yaxis.range) == [0.0, 8.4]
    assert fig.data[0].mode == "markers" and fig.layout.xaxis.dtick == 2  # no tick at step 2.5
    many = charts.line_figure(_series("train/loss", [1, 2], [4.2, 4.0]))
    assert many.layout.xaxis.range is None and many.layout.yaxis.range is None  # plotly's own choice


def test_an_empty_chart_keeps_its_frame_and_says_why() -> None:
    fig = charts.empty_figure("kNN top-1 accuracy", height=300)
    assert fig.layout.height == 300 and fig.layout.annotations[0].text == "no points yet" and not fig.data
