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
