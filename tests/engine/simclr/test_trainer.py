"""End to end on tiny synthetic data: metrics, summary, checkpoint, resume, cancel, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from db.config import RunConfig, run_dir
from db.queries import count_metrics, create_run, get_run, metric_rows
from db.session import make_engine, write_tx
from db.queue import claim_next, create_and_claim
from db.status import RUNNING, transition
from engine.simclr.checkpoint import load_checkpoint
from engine.simclr.loss import nt_xent
from engine.jobs.runner import execute_run
from engine.simclr.trainer import RunCancelled, RunContext, train
from tests.conftest import tiny_config


def claimed_run(db, cfg: RunConfig) -> int:  # noqa: ANN001
    """A new run claimed by worker "test": its attempt 1."""
    return create_and_claim(db, cfg, "test")["id"]


def test_one_epoch_writes_the_expected_metrics_and_summary(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=2)
    run_id = claimed_run(db, cfg)
    assert execute_run(db, run_id, 1, log=lambda m: None) == "completed"

    run = get_run(db, run_id)
    steps = 2 * (64 // 32)
    counts = count_metrics(db, run_id)
    assert counts["train/loss"] == steps and counts["train/lr"] == steps
    assert counts["epoch/loss"] == 2 and counts["knn/top1"] == 2
    assert counts["linear/loss"] == 1 and counts["linear/top1"] == 1 and counts["train/images_per_sec"] >= 2
    assert run["status"] == "completed" and run["finished_at"] is not None and run["error"] is None
    assert run["step"] == steps and run["total_steps"] == steps and run["epoch"] == 2
    for key in ("final_loss", "knn_top1", "linear_loss", "linear_top1"):
        assert run[key] is not None
    assert 0.0 <= run["linear_top1"] <= 1.0 and run["linear_loss"] > 0
    assert run["linear_top1"] == metric_rows(db, [run_id], ["linear/top1"])[0]["value"]
    assert len(run["subset_indices"]) == 64
    state = load_checkpoint(Path(run["checkpoint_path"]))
    assert state["epoch"] == 2 and state["step"] == steps and state["config"] == cfg.to_dict()
    # devices=1: the plain one-process path, no process group and no data-parallel state.
    assert "rng_ranks" not in state and not torch.distributed.is_initialized()


def test_resume_continues_without_duplicate_rows(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop after epoch 1 (as a crash would), resume, and get the same steps exactly once."""
    import functools

    import engine.simclr.trainer as trainer

    # Write every row at once, so that the crashed step's rows are in the database for sure.
    monkeypatch.setattr(trainer, "MetricLogger", functools.partial(trainer.MetricLogger, interval_s=0.0))
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=2, eval_every=5)
    run_id = claimed_run(db, cfg)

    class CrashInEpoch2(Exception):
        pass

    def crash(step: int, total: int, loss: torch.Tensor) -> None:
        if step == 3:  # first step of epoch 2: its rows reach the database, then "the process dies"
            raise CrashInEpoch2()

    messages: list[str] = []
    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id), on_step=crash, log=messages.append)
    with pytest.raises(CrashInEpoch2):
        train(cfg, ctx)
    assert 3 in [r["step"] for r in metric_rows(db, [run_id], ["train/loss"])]
    ctx.on_step = None
    summary = train(cfg, ctx)
    assert any("resumed from" in m and "at epoch 1, step 2" in m for m in messages)

    steps = [r["step"] for r in metric_rows(db, [run_id], ["train/loss"])]
    assert steps == [1, 2, 3, 4]
    assert len(metric_rows(db, [run_id], ["epoch/loss"])) == 2
    assert summary["linear_top1"] is not None


def test_cancel_stops_at_a_step_boundary_and_keeps_the_checkpoint(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=3)
    run_id = claimed_run(db, cfg)
    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id), log=lambda m: None)
    ctx.on_step = lambda step, total, loss: ctx.cancel.set() if step == 3 else None
    with pytest.raises(RunCancelled):
        train(cfg, ctx)
    assert load_checkpoint(ctx.checkpoint_path)["epoch"] == 1
    assert max(r["step"] for r in metric_rows(db, [run_id], ["train/loss"])) == 3


def test_cancel_request_in_the_database_ends_the_run_cancelled(sqlite_url: str) -> None:

    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config(epochs=50))
    from db.queue import request_cancel

    request_cancel(db, run_id)  # running: sets the flag; the first heartbeat sees it
    assert execute_run(db, run_id, 1, log=lambda m: None) == "cancelled"
    run = get_run(db, run_id)
    assert run["status"] == "cancelled" and run["step"] < 50 * 2


def test_nan_loss_fails_with_a_clear_message(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.simclr.trainer as trainer

    calls = []

    def diverging(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
        calls.append(1)  # the third step's loss blows up, as with a far too large learning rate
        loss = nt_xent(z1, z2, temperature)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer, "nt_xent", diverging)
    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config(epochs=3))
    assert execute_run(db, run_id, 1, log=lambda m: None) == "failed"
    error = get_run(db, run_id)["error"]
    assert error == "train/loss became NaN at epoch 2 step 3; try a lower learning rate"


def test_any_other_exception_fails_the_run_with_one_line(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    import engine.simclr.trainer as trainer

    def broken(cfg: RunConfig) -> None:
        raise ValueError("disk on fire\nsecond line")

    monkeypatch.setattr(trainer, "load_dataset", broken)
    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config())
    assert execute_run(db, run_id, 1, log=lambda m: None) == "failed"
    assert get_run(db, run_id)["error"] == "ValueError: disk on fire"
    assert "Traceback" in capsys.readouterr().err


def test_out_of_memory_names_the_batch_size() -> None:
    from engine.jobs.runner import failure_message

    msg = failure_message(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), tiny_config(batch_size=64, subset_size=64))
    assert "batch size 64" in msg and "32" in msg


def test_a_run_must_be_claimed_first(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    run_id = create_run(db, tiny_config())
    with pytest.raises(RuntimeError, match="is queued, not running"):
        execute_run(db, run_id, 1)


def test_reference_backend_trains(sqlite_url: str) -> None:
    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config(augment_backend="reference"))
    assert execute_run(db, run_id, 1, log=lambda m: None) == "completed"


@pytest.mark.parametrize("new_claimant", ["other-worker", "test"])
def test_a_run_taken_over_by_another_claim_is_left_alone(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                         new_claimant: str) -> None:
    """A process whose run was requeued and claimed again stops and does not touch its status: by
    another worker, or by its own worker as a new attempt (the claim is worker and attempt)."""
    import engine.jobs.runner as runner
    from db.status import QUEUED

    monkeypatch.setattr(runner, "HEARTBEAT_S", 0.2)
    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config(epochs=200))

    def take_over(step: int, total: int, loss: torch.Tensor) -> None:
        if step == 2:  # a stale-run sweep requeues it; another worker claims it
            with write_tx(db) as conn:
                transition(conn, run_id, QUEUED, expect=RUNNING)
            claim_next(db, new_claimant, None, run_id=run_id)

    assert execute_run(db, run_id, 1, on_step=take_over, log=lambda m: None) == "running"
    run = get_run(db, run_id)
    assert run["status"] == "running" and run["worker_id"] == new_claimant and run["step"] < 400
    assert run["attempts"] == 2


def test_a_run_whose_data_is_gone_fails_before_training_naming_it(sqlite_url: str, tmp_path: Path) -> None:
    """The run's process checks the data as the form and the CLI did (it may have been removed since,
    or never been on this worker's machine) and fails with that message, not a traceback."""
    db = make_engine(sqlite_url)
    run_id = claimed_run(db, RunConfig(dataset="imagefolder", data_dir=str(tmp_path / "gone"), batch_size=2))
    assert execute_run(db, run_id, 1, log=lambda m: None) == "failed"
    error = get_run(db, run_id)["error"]
    assert error.startswith("data_dir: ") and str(tmp_path / "gone" / "train") in error
