"""Run one claimed run to its end: heartbeat, cancel, train, and a true final status.

Used by `python -m engine train` (in the foreground) and by the worker's child processes
(`python -m engine execute RUN_ID`). Whatever happens, the run leaves `running`: completed,
cancelled, or failed with a one-line error (the full traceback goes to stderr, i.e. the log).

A run with `devices` > 1 runs this in each of its processes (torchrun starts them): process 0
heartbeats and records the outcome; the others train and report nothing. If another process
fails, process 0 exits without recording one: the executor then sees the attempt fail, as for a
crash, and requeues it (retries permitting) to resume from the checkpoint.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Any, Callable

import torch
from sqlalchemy import Engine

from db.config import ConfigError, RunConfig, run_dir
from db.datasets import check_data
from db.heartbeat import HEARTBEAT_S, STALE_AFTER_S
from db.identity import ENV_VAR, DatabaseChanged, Identity, identify, verify
from db.queries import get_run
from db.queue import beat_run, cancel_requested
from db.session import write_tx
from db.status import CANCELLED, COMPLETED, FAILED, RUNNING, transition
from engine.jobs.sysmon import SystemMonitor
from engine.simclr import distributed
from engine.simclr.checkpoint import CheckpointError
from engine.simclr.metrics_log import NonFiniteLoss
from engine.simclr.trainer import RunCancelled, RunContext, resolve_device, train

# The final status write is retried (a full disk or a database restart may pass) before giving up;
# then the process exits non-zero and its worker, or a stale-run recovery, settles the run.
FINAL_WRITE_DELAYS_S = (1.0, 2.0, 4.0, 8.0)
CANCEL_POLL_S = 1.0


class Heartbeat(threading.Thread):
    """Every few seconds: mark the run alive; every second: look for a cancel request.

    A thread, not the training loop, so that long evaluations and slow first steps still
    heartbeat. It only sets an Event; the loop stops itself at the next step or evaluation batch.
    The cancel look is a read (no write lock), so doing it every second costs nothing; it is what
    makes a cancel take seconds, not a heartbeat interval.
    """

    def __init__(self, db: Engine, run_id: int, worker_id: str, attempt: int, cancel: threading.Event,
                 interval_s: float | None = None, cancel_poll_s: float = CANCEL_POLL_S,
                 identity: Identity | None = None):
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.db, self.run_id, self.worker_id, self.attempt, self.cancel = db, run_id, worker_id, attempt, cancel
        self.interval_s = HEARTBEAT_S if interval_s is None else interval_s
        self.cancel_poll_s = min(cancel_poll_s, self.interval_s)
        self.identity = identity
        self.lost = False
        self.database_changed: str | None = None
        self._stop = threading.Event()

    def beat(self) -> None:
        if self.identity is not None:
            try:
                verify(self.db, self.identity)
            except DatabaseChanged as e:
                # Writing on would put this run's rows into some other database's run.
                self.database_changed = str(e)
                self.lost = True
                self.cancel.set()
                return
        state = beat_run(self.db, self.run_id, self.worker_id, self.attempt)
        if state == "lost":
            # Requeued after a missed heartbeat, claimed again (by anyone, this worker included), or
            # deleted: this process no longer owns the run and must stop writing to it.
            self.lost = True
        if state != "ours":
            self.cancel.set()

    def look_for_cancel(self) -> None:
        if self.run_id in cancel_requested(self.db, [self.run_id]):
            self.cancel.set()

    def run(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(self.cancel_poll_s):
            try:
                if time.monotonic() - last_beat >= self.interval_s:
                    self.beat()
                    last_beat = time.monotonic()
                else:
                    self.look_for_cancel()
            except Exception as e:  # a busy or briefly unreachable database must not kill training
                print(f"heartbeat failed: {e}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()


def failure_message(exc: BaseException, cfg: RunConfig) -> str:
    """One line for the run's `error` column: what went wrong and, where we know, what to do."""
    if isinstance(exc, (NonFiniteLoss, CheckpointError, DatabaseChanged)):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return (f"CUDA out of memory at batch size {cfg.batch_size}; try a smaller batch size "
                f"(e.g. {max(2, cfg.batch_size // 2)}) or the imagenet stem")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def execute_run(db: Engine, run_id: int, attempt: int, *,
                on_step: Callable[[int, int, float], None] | None = None, log: Callable[[str], None] = print,
                claim: str | None = None) -> str:
    """Train attempt `attempt` of run `run_id` (claimed already, by db.queue's claim) to its end;
    returns its final status.

    With `claim` (the claimant's worker_id), only while the run is still held by that claim and
    attempt: a process that starts late (a Ray job that waited for resources while its attempt was
    given up and the run claimed again) leaves the run alone.
    """
    run = get_run(db, run_id)
    if run is None:
        raise LookupError(f"no run with id {run_id}")
    if claim is not None and (run["status"] != RUNNING or run["worker_id"] != claim or run["attempts"] != attempt):
        log(f"run {run_id} is no longer claimed by {claim}, attempt {attempt} (it is {run['status']}, attempt "
            f"{run['attempts']}, claimed by {run['worker_id'] or 'nobody'}); not training it")
        return run["status"]
    if run["status"] != RUNNING:
        raise RuntimeError(f"run {run_id} is {run['status']}, not running: claim it first")
    if run["attempts"] != attempt:
        raise RuntimeError(f"run {run_id} is at attempt {run['attempts']}, not {attempt}: "
                           "this process's claim was taken over")
    identity = identify(db)
    expected = os.environ.get(ENV_VAR)
    if expected and expected != identity.database_id:
        raise DatabaseChanged(f"run {run_id}: the database {db.url.render_as_string(hide_password=True)} is "
                              f"database {identity.database_id}, not {expected} that the worker claimed it in; "
                              "not running it")
    cfg = RunConfig.from_dict(run["config"])
    if os.environ.get("SIMCLR_NUM_THREADS"):
        torch.set_num_threads(max(1, int(os.environ["SIMCLR_NUM_THREADS"])))

    main = distributed.env_rank() == 0  # the run's only process, or process 0 of several
    ctx = RunContext(db=db, run_id=run_id, run_dir=run_dir(run_id, identity.database_id),
                     on_step=on_step if main else None, log=log if main else _quiet,
                     keep_optimizer_state=os.environ.get("SIMCLR_KEEP_OPTIMIZER_STATE", "") not in ("", "0"))
    heartbeat = Heartbeat(db, run_id, run["worker_id"], attempt, ctx.cancel, identity=identity)
    # Device use is sampled by process 0 only (its device): the sys/* series are one per run.
    monitor = SystemMonitor(db, run_id)
    if main:
        heartbeat.beat()
        heartbeat.start()
        monitor.start()
    try:
        # The data may have gone, or never been on this machine. Every process checks before any
        # joins the others, so all of them stop here alike.
        problems = check_data(cfg)
        if problems:
            raise problems[0]
        if cfg.devices > 1 or distributed.launched():
            ctx.dp = dp = distributed.join(cfg, resolve_device(cfg.device))
            ctx.log(f"data-parallel: {dp.world} processes on {dp.device.type}, {cfg.batch_size // dp.world} "
                    f"images each per step, BatchNorm {'synchronised' if dp.sync_batchnorm else 'per process'}")
        summary = train(cfg, ctx)
        status, values = COMPLETED, {k: v for k, v in summary.items() if v is not None}
    except ConfigError as e:
        status, values = FAILED, {"error": str(e)}
        log(f"run {run_id} cannot start: {e}")
    except (RunCancelled, KeyboardInterrupt) as e:
        why = "interrupted from the keyboard" if isinstance(e, KeyboardInterrupt) else "cancelled by request"
        status, values = CANCELLED, {"error": why}
        log(f"run {run_id} {why}; its last checkpoint is kept")
    except BaseException as e:  # noqa: BLE001 — every failure must leave a true status behind
        traceback.print_exc()
        if ctx.dp and isinstance(e, torch.distributed.DistError):
            # Another process of the run died (its traceback, if any, is in the same log). Not
            # this run's verdict: exit without one, so the executor requeues it like a crash.
            log(f"run {run_id}: another process of the run failed ({failure_message(e, cfg)}); "
                "leaving the outcome to the executor")
            raise
        status, values = FAILED, {"error": failure_message(e, cfg)}
        log(f"run {run_id} failed: {values['error']}")
    finally:
        heartbeat.stop()
        monitor.stop()
        distributed.leave()
    if heartbeat.database_changed:
        raise DatabaseChanged(f"run {run_id} stopped: {heartbeat.database_changed}")
    if not main and status != FAILED:
        return status  # process 0 records the outcome (any process may record its own failure)
    if heartbeat.lost:
        log(f"run {run_id} is no longer this process's (requeued or claimed elsewhere); leaving it as it is")
    return _final_write(db, run_id, run["worker_id"], attempt, status, values, log)


def _final_write(db: Engine, run_id: int, claim: str | None, attempt: int, status: str, values: dict[str, Any],
                 log: Callable[[str], None]) -> str:
    """Record the final status, retrying a failing write; a run must not stay `running` for good."""
    for delay in (*FINAL_WRITE_DELAYS_S, None):
        try:
            with write_tx(db) as conn:
                if not transition(conn, run_id, status, expect=RUNNING, claimed_by=claim, attempt=attempt,
                                  **values):
                    now = get_run(conn, run_id)
                    log(f"run {run_id} was moved to {now['status'] if now else 'deleted'} by someone else meanwhile")
                    return now["status"] if now else status
            return status
        except Exception as e:  # noqa: BLE001 — full disk, read-only or unreachable database
            if delay is None:
                # Nothing more can be written here. Under a worker, the worker records this process's
                # exit; alone (a foreground `train`), the stopped heartbeat tells the truth without us:
                # the run shows as dead after the stale limit, and a live worker's recover_stale
                # requeues it while it has retries left (else fails it, or ends it cancelled).
                log(f"could not record run {run_id} as {status} ({str(e).splitlines()[0]}): unless its worker "
                    f"records this exit, it shows as dead after the stale limit (default {STALE_AFTER_S:g} s) "
                    "and a live worker requeues it to resume from its last checkpoint while it has retries "
                    "left, else marks it failed")
                raise
            log(f"could not record run {run_id} as {status} ({str(e).splitlines()[0]}); retrying in {delay:g} s")
            time.sleep(delay)
    return status


def _quiet(message: str) -> None:
    """The log of processes other than 0: process 0 speaks for the run."""


def run_summary_line(run: dict[str, Any] | None, run_id: int | None = None) -> str:
    if run is None:
        return f"run {run_id} no longer exists in this database"
    parts = [f"run {run['id']} {run['status']}"]
    for key in ("final_loss", "knn_top1", "linear_loss", "linear_top1"):
        if run.get(key) is not None:
            parts.append(f"{key} {run[key]:.4f}")
    if run.get("error"):
        parts.append(f"error: {run['error']}")
    return ", ".join(parts)
