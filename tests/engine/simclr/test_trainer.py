"""End to end on tiny synthetic data: metrics, summary, checkpoint, resume, cancel, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from db.config import CHECKPOINT_INFO_FILE, ENCODER_FILE, ENCODER_INFO_FILE, INSIGHTS_FILE, RunConfig, run_dir
from db.identity import database_id
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


def _recording_phases(monkeypatch: pytest.MonkeyPatch, on_phase=None) -> list[str]:  # noqa: ANN001
    import engine.simclr.trainer as trainer

    seen: list[str] = []
    real = trainer.set_phase

    def record(db, run_id: int, phase: str) -> None:  # noqa: ANN001
        real(db, run_id, phase)
        seen.append(get_run(db, run_id)["phase"])  # as the dashboard reads it
        if on_phase:
            on_phase(phase)

    monkeypatch.setattr(trainer, "set_phase", record)
    return seen


# The CPU run, and the same on a GPU where there is one (bench/gpu_check.py runs `pytest -m cuda`;
# the tests run eager there: the GPU check times the compiled model, and compiling costs a minute).
DEVICES = pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])


@DEVICES
def test_one_epoch_writes_the_expected_metrics_and_summary(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                           device: str) -> None:
    seen = _recording_phases(monkeypatch)
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=2, device=device, compile="off")
    run_id = claimed_run(db, cfg)
    assert get_run(db, run_id)["phase"] == "starting"  # claimed, loading data
    assert execute_run(db, run_id, 1, log=lambda m: None) == "completed"
    # The phases as the dashboard reads them, in order.
    assert seen == ["training", "kNN", "checkpoint"] * 2 + ["linear probe"]

    run = get_run(db, run_id)
    steps = 2 * (64 // 32)
    counts = count_metrics(db, run_id)
    assert counts["train/loss"] == steps and counts["train/lr"] == steps
    assert counts["epoch/loss"] == 2 and counts["knn/top1"] == 2
    assert counts["linear/loss"] == 1 and counts["linear/top1"] == 1 and counts["train/images_per_sec"] >= 2
    # Each phase's measured wall time, for the dashboard's estimates and ETAs.
    assert counts["time/epoch_s"] == 2 and counts["time/knn_s"] == 2 and counts["time/checkpoint_s"] == 2
    assert counts["time/linear_s"] == 1
    assert all(r["value"] > 0 for r in metric_rows(db, [run_id], ["time/epoch_s", "time/knn_s", "time/linear_s"]))
    assert run["phase"] is None  # a finished run is doing nothing
    assert run["status"] == "completed" and run["finished_at"] is not None and run["error"] is None
    assert run["step"] == steps and run["total_steps"] == steps and run["epoch"] == 2
    for key in ("final_loss", "knn_top1", "linear_loss", "linear_top1"):
        assert run[key] is not None
    assert 0.0 <= run["linear_top1"] <= 1.0 and run["linear_loss"] > 0
    assert run["linear_top1"] == metric_rows(db, [run_id], ["linear/top1"])[0]["value"]
    assert len(run["subset_indices"]) == 64
    state = load_checkpoint(Path(run["checkpoint_path"]))
    assert state["epoch"] == 2 and state["step"] == steps and state["config"] == cfg.to_dict()
    # What the run page offers: the checkpoint's epoch and step, the encoder alone, the insights.
    folder = run_dir(run_id, database_id(db))
    assert json.loads((folder / CHECKPOINT_INFO_FILE).read_text())["step"] == steps
    assert json.loads((folder / ENCODER_INFO_FILE).read_text())["epoch"] == 2
    encoder = torch.load(folder / ENCODER_FILE, weights_only=True)
    assert encoder.keys() == {k[len("encoder."):] for k in state["model"] if k.startswith("encoder.")}
    assert "trained_index" in np.load(folder / INSIGHTS_FILE).files
    # devices=1: the plain one-process path, no process group and no data-parallel state.
    assert "rng_ranks" not in state and not torch.distributed.is_initialized()


@DEVICES
def test_resume_continues_without_duplicate_rows(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    """Stop after epoch 1 (as a crash would), resume, and get the same steps exactly once."""
    import functools

    import engine.simclr.trainer as trainer

    # Write every row at once, so that the crashed step's rows are in the database for sure.
    monkeypatch.setattr(trainer, "MetricLogger", functools.partial(trainer.MetricLogger, interval_s=0.0))
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=2, eval_every=5, device=device, compile="off")
    run_id = claimed_run(db, cfg)

    class CrashInEpoch2(Exception):
        pass

    def crash(step: int, total: int, loss: torch.Tensor) -> None:
        if step == 3:  # first step of epoch 2: its rows reach the database, then "the process dies"
            raise CrashInEpoch2()

    messages: list[str] = []
    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), on_step=crash, log=messages.append)
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
    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), log=lambda m: None)
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


def test_the_seed_code_settings_and_the_seed_probe_run_end_to_end(sqlite_url: str) -> None:
    """probe=seed with the seed-code optimizer fields (LARS on every parameter, zero-norm freeze,
    per-epoch cosine) on CPU; the probe's epochs shrunk from the seed's 500 to keep it quick."""
    from db.presets import PRESETS

    seed_code = {k: v for k, v in PRESETS["seed-code"].values.items() if k not in ("image_size", "probe_epochs")}
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=2, probe_epochs=3, **_typed(seed_code))
    assert (cfg.probe, cfg.lars_exclude, cfg.lars_zero_norm, cfg.schedule) == ("seed", "none", "freeze",
                                                                                 "cosine_per_epoch")
    run_id = claimed_run(db, cfg)
    logs: list[str] = []
    assert execute_run(db, run_id, 1, log=logs.append) == "completed"
    run = get_run(db, run_id)
    assert 0.0 <= run["linear_top1"] <= 1.0 and run["linear_loss"] > 0
    assert any("linear probe (seed)" in m for m in logs)
    lrs = [r["value"] for r in metric_rows(db, [run_id], ["train/lr"])]
    assert lrs[0] == lrs[1] and lrs[2] < lrs[0]  # per-epoch cosine: constant within the first epoch


def _typed(values: dict[str, str]) -> dict[str, object]:
    from db.config import coerce_field

    return {k: coerce_field(k, v) for k, v in values.items()}


def test_a_new_database_on_the_same_runs_folder_never_trains_on_another_runs_weights(tmp_path: Path) -> None:
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    new = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    cfg = tiny_config()
    old_run, new_run = claimed_run(old, cfg), claimed_run(new, cfg)
    assert old_run == new_run == 1  # ids restart in every database...
    old_dir, new_dir = run_dir(old_run, database_id(old)), run_dir(new_run, database_id(new))
    assert old_dir != new_dir  # ...folders do not
    assert execute_run(old, old_run, 1, log=lambda m: None) == "completed"
    assert Path(get_run(old, old_run)["checkpoint_path"]).parent == old_dir
    # Finished: the weights stay, the optimizer state (as large again) is dropped.
    state = load_checkpoint(old_dir / "checkpoint.pt")
    assert "model" in state and "optimizer" not in state and "rng_cpu" not in state
    # Even a checkpoint copied into the new run's folder is refused, with the way out named.
    new_dir.mkdir(parents=True)
    (new_dir / "checkpoint.pt").write_bytes((old_dir / "checkpoint.pt").read_bytes())
    assert execute_run(new, new_run, 1, log=lambda m: None) == "failed"
    error = get_run(new, new_run)["error"]
    assert f"belongs to run 1 of database {database_id(old)}" in error and "discard" in error
    assert "weights_only" not in error


def test_keeping_the_optimizer_state_is_asked_for_by_environment(sqlite_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.jobs.runner as runner

    db = make_engine(sqlite_url)
    seen: list[bool] = []
    monkeypatch.setattr(runner, "train", lambda cfg, ctx: seen.append(ctx.keep_optimizer_state) or {})
    assert execute_run(db, claimed_run(db, tiny_config()), 1, log=lambda m: None) == "completed"
    monkeypatch.setenv("SIMCLR_KEEP_OPTIMIZER_STATE", "1")
    assert execute_run(db, claimed_run(db, tiny_config()), 1, log=lambda m: None) == "completed"
    assert seen == [False, True]


def test_a_failing_final_status_write_is_retried_not_left_running(sqlite_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.jobs.runner as runner

    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config())
    real, calls = runner.transition, []

    def disk_full_twice(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) <= 2:
            raise OSError(28, "database or disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train", lambda cfg, ctx: {"final_loss": 1.0})  # the write is what is tested
    monkeypatch.setattr(runner, "transition", disk_full_twice)
    monkeypatch.setattr(runner, "FINAL_WRITE_DELAYS_S", (0.0, 0.0, 0.0))
    assert execute_run(db, run_id, 1, log=lambda m: None) == "completed"
    assert get_run(db, run_id)["status"] == "completed" and len(calls) == 3


def test_a_final_status_that_cannot_be_written_leaves_a_dead_run_a_worker_requeues(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full for good, no worker around (a foreground `train`): the run must not stay `running`
    for ever. Its heartbeat has stopped, so it shows as dead after the stale limit, and the next live
    worker requeues it; the process says so in its last line."""
    from datetime import timedelta

    import engine.jobs.runner as runner
    from db import views
    from db.heartbeat import STALE_AFTER_S
    from db.queue import recover_stale
    from db.status import utcnow

    db = make_engine(sqlite_url)
    run_id = claimed_run(db, tiny_config())
    said: list[str] = []

    def disk_full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "database or disk is full")

    monkeypatch.setattr(runner, "train", lambda cfg, ctx: {"final_loss": 1.0})
    monkeypatch.setattr(runner, "transition", disk_full)
    monkeypatch.setattr(runner, "FINAL_WRITE_DELAYS_S", (0.0,))
    with pytest.raises(OSError, match="full"):
        execute_run(db, run_id, 1, log=said.append)
    assert "shows as dead after the stale limit" in said[-1] and "requeues it" in said[-1], said
    later = utcnow() + timedelta(seconds=STALE_AFTER_S + 1)
    assert views.run_summaries(db, ids=[run_id], now=later)[0]["display_status"] == "dead"
    assert [o for o in recover_stale(db, now=later)], "no worker requeued it"
    assert get_run(db, run_id)["status"] == "queued"


@pytest.mark.parametrize("phase, missing, probe", [("kNN", "knn/top1", "lbfgs"),
                                                    ("linear probe", "linear/top1", "lbfgs"),
                                                    ("linear probe", "linear/top1", "seed")])
def test_cancel_is_honoured_inside_evaluation(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, phase: str,
                                             missing: str, probe: str) -> None:
    """A cancel arriving while the run evaluates stops it before the evaluation ends, not after
    (either probe: the seed's 500 Adam epochs check between batches)."""
    db = make_engine(sqlite_url)
    cfg = tiny_config(epochs=1, probe=probe)
    run_id = claimed_run(db, cfg)
    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), log=lambda m: None)
    _recording_phases(monkeypatch, lambda p: ctx.cancel.set() if p == phase else None)
    with pytest.raises(RunCancelled):
        train(cfg, ctx)
    assert count_metrics(db, run_id).get(missing, 0) == 0


# --- speed: no host sync in the step, torch.compile ------------------------------------------------

HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


class HostReadGuard:
    """While `active`, Tensor methods that read a value back to the host raise when the engine calls them.

    On a GPU each of them blocks the host until the device has finished all queued work. Only
    calls from engine/ count: torch's own optimizers read their CPU step counters, which is free.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import sys

        import engine

        self.active = False
        engine_dir = str(Path(engine.__file__).parent)
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def guard(tensor: torch.Tensor, *args: object, _name: str = name, _original=original,  # noqa: ANN001
                      **kwargs: object):  # noqa: ANN202
                caller = sys._getframe(1).f_code
                if self.active and caller.co_filename.startswith(engine_dir):
                    raise AssertionError(f"Tensor.{_name}() in {caller.co_name} ({caller.co_filename}) "
                                         f"during a training step: a host-device sync on a GPU")
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, guard)


def test_training_steps_read_nothing_back_to_the_host(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps 2..4 of a run, loop body included, with every host read from engine/ turned into an error.

    On the CPU the augmentation may group images by reading group sizes (free there); the GPU's
    masked path is forced here so that the code a GPU runs is what the guard sees.
    """
    import functools

    import engine.simclr.augment as augment
    import engine.simclr.trainer as trainer

    guard = HostReadGuard(monkeypatch)
    # The guard itself works: the CPU's grouped ColorJitter reads group sizes back.
    aug, images = augment.BatchedAugment(16), torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    guard.active = True
    with pytest.raises(AssertionError, match=r"Tensor.tolist\(\) in color_jitter_"):
        aug(images, torch.Generator().manual_seed(0))
    guard.active = False

    monkeypatch.setattr(augment, "group_on_host", lambda device: False)
    # Metric rows are read back once a second by design (one transfer for all of them): not in this window.
    monkeypatch.setattr(trainer, "MetricLogger", functools.partial(trainer.MetricLogger, interval_s=1e9))
    db = make_engine(sqlite_url)
    cfg = tiny_config(subset_size=128)  # 4 steps
    run_id = claimed_run(db, cfg)
    seen = []

    def on_step(step: int, total: int, loss: torch.Tensor) -> None:
        seen.append(step)
        guard.active = step < 4  # from the end of step 1 to the end of step 4 (the epoch's end reads the loss)

    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), on_step=on_step,
                     log=lambda m: None)
    assert train(cfg, ctx)["final_loss"] > 0
    assert seen == [1, 2, 3, 4]


def tiny_encoder(encoder: str, stem: str) -> tuple[torch.nn.Module, int]:
    """The smallest encoder that still trains: compiling a ResNet on a 2-core CPU takes minutes."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 16, bias=False)), 16


@pytest.mark.slow
def test_compiled_and_eager_models_give_the_same_loss(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """compile=on runs the model under torch.compile (inductor) and trains to the same numbers."""
    import torch._dynamo

    import engine.simclr.model as model

    monkeypatch.setattr(model, "build_encoder", tiny_encoder)
    db = make_engine(sqlite_url)
    results = {}
    for mode in ("off", "on"):
        cfg = tiny_config(compile=mode, epochs=2)
        run_id = claimed_run(db, cfg)
        messages: list[str] = []
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, database_id(db)), log=messages.append)
        summary = train(cfg, ctx)
        compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        results[mode] = (summary["final_loss"], summary["knn_top1"], compiled, messages,
                         [r["value"] for r in metric_rows(db, [run_id], ["train/loss"])])
    eager, comp = results["off"], results["on"]
    assert eager[2] == 0 and comp[2] >= 1  # only compile=on compiled anything
    assert comp[0] == pytest.approx(eager[0], rel=1e-5) and comp[1] == eager[1]
    assert comp[4] == pytest.approx(eager[4], rel=1e-5) and len(comp[4]) == 4
    assert any(m.startswith("torch.compile: the first step took") for m in comp[3])
    assert not any("torch.compile" in m for m in eager[3])


def test_compile_auto_means_on_with_cuda_only() -> None:
    from engine.simclr.trainer import compile_enabled

    assert compile_enabled(tiny_config(), torch.device("cuda"))
    assert not compile_enabled(tiny_config(), torch.device("cpu"))
    assert compile_enabled(tiny_config(compile="on"), torch.device("cpu"))
    assert not compile_enabled(tiny_config(compile="off"), torch.device("cuda"))


@pytest.mark.cuda
def test_cuda_steps_never_sync_with_the_host() -> None:
    """On a GPU, torch itself reports every synchronizing call: none may happen in a step."""
    from engine.simclr.trainer import build_training

    cfg = tiny_config(device="cuda", subset_size=160, compile="off")  # 5 steps
    t = build_training(cfg, torch.device("cuda"))
    batches = t.batches()
    t.step(next(batches))  # the epoch's shuffle is copied to the device here, once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [t.step(next(batches)) for _ in range(4)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(loss.is_cuda for loss in losses) and torch.isfinite(torch.stack(losses)).all()
