from __future__ import annotations

import pytest
import torch

from db.config import RunConfig
from db.queries import create_run, get_run, metric_rows
from db.session import make_engine
from engine.simclr.metrics_log import MetricLogger, NonFiniteLoss


def test_rows_are_buffered_then_flushed_with_progress(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    run_id = create_run(db, RunConfig(batch_size=64))
    log = MetricLogger(db, run_id, interval_s=3600, max_rows=1000)
    for step in range(1, 11):
        log.log("train/loss", torch.tensor(1.0 / step), step, step / 10)
    log.set_progress(step=10, epoch=1)
    assert metric_rows(db, [run_id]) == []  # nothing written yet: batched
    log.flush()
    rows = metric_rows(db, [run_id])
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert rows[1]["value"] == pytest.approx(0.5)
    assert get_run(db, run_id)["step"] == 10


def test_flushes_when_the_buffer_is_full(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    run_id = create_run(db, RunConfig(batch_size=64))
    log = MetricLogger(db, run_id, interval_s=3600, max_rows=5)
    for step in range(1, 6):
        log.log("train/lr", 0.1, step, 0.0)
    assert len(metric_rows(db, [run_id])) == 5


def test_nan_loss_raises_and_keeps_earlier_rows(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    run_id = create_run(db, RunConfig(batch_size=64))
    log = MetricLogger(db, run_id, interval_s=3600)
    log.log("train/loss", torch.tensor(1.0), 1, 0.1)
    log.log("train/loss", torch.tensor(float("nan")), 2, 1.2)
    with pytest.raises(NonFiniteLoss, match="train/loss became NaN at epoch 2 step 2; try a lower learning rate"):
        log.flush()
    assert [r["step"] for r in metric_rows(db, [run_id])] == [1]
