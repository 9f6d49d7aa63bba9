"""The job queue: claim, cancel, requeue, recover, and the `workers` registry.

Every status change here goes through `db.status.transition` except the claim itself, which must
be a single `UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING` so that two workers can never
take the same run (see `claim_next`). Decisions about one run (requeue it? fail it?) read the row
under a lock first: BEGIN IMMEDIATE on SQLite (the whole database is ours until commit),
SELECT ... FOR UPDATE on PostgreSQL (the row is ours until commit), so a heartbeat or a
completion that lands meanwhile cannot be overwritten by a stale decision.
"""

from __future__ import annotations

import itertools
import math
import secrets
import signal
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from sqlalchemy import Connection, Engine, func, insert, select, update

from db.config import ConfigError, RunConfig, coerce_field, config_fields, config_from_text, runs_root
from db.identity import database_id
from db.models import runs, workers
from db.queries import create_runs
from db.session import is_sqlite, read_tx, write_tx
from db.status import (ALLOWED, CANCELLED, COMPLETED, FAILED, FINISHED, QUEUED, RUNNING, STARTING, IllegalTransition, transition,
                       utcnow)

DEFAULT_STALE_AFTER_S = 60.0
# The claim (worker_id) a run's process was started for; it trains the run only while that claim holds.
CLAIM_ENV = "SIMCLR_CLAIM"
# The background worker `./lab.sh serve` and the dashboard start exits after this long with nothing
# to do (so it does not linger for days); the next `serve` or page view starts another.
LOCAL_IDLE_EXIT_S = 1800.0


def local_worker_log(engine: Engine) -> Path:
    """The log of this database's background worker on this machine (`worker --detach`, or the
    dashboard's): runs/<database id>/worker.log, beside its run folders, so two databases sharing
    a runs folder never write one log."""
    return runs_root() / database_id(engine) / "worker.log"


class NoSuchRun(LookupError):
    pass


# ---------------------------------------------------------------------------------------- cancel
def request_cancel(engine: Engine, run_id: int) -> str:
    """Cancel a run: a queued one at once, a running one at its next step or evaluation batch.

    Returns what happened, in words, for the CLI and the dashboard.
    """
    with write_tx(engine) as conn:
        run = _locked_run(conn, run_id)
        if run is None:
            raise NoSuchRun(f"no run with id {run_id}")
        if run["status"] == QUEUED and transition(conn, run_id, CANCELLED, expect=QUEUED,
                                                  error="cancelled before it started"):
            return f"run {run_id} cancelled (it was queued)"
        if run["status"] in (QUEUED, RUNNING):  # queued lost a race to a worker: now running
            conn.execute(update(runs).where(runs.c.id == run_id).values(cancel_requested=True))
            return f"run {run_id} will stop within seconds (at its next step or evaluation batch) and end cancelled"
        return f"run {run_id} is already {run['status']}; nothing to cancel"


# ---------------------------------------------------------------------------------------- resume
class CannotResume(ValueError):
    """The run cannot be resumed now; the message says why."""


RESUMABLE = (FAILED, CANCELLED)


def requeue_for_resume(conn: Connection, run_id: int, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> str:
    """Put a failed, cancelled or dead run back in the queue, to continue from its last checkpoint.

    One rule for `train --resume` (which then claims it itself) and the dashboard's Resume button
    (a worker claims it). Returns the status it had. Raises CannotResume for a completed run or
    a running one whose heartbeat is fresh. A queued run is left as it is.
    """
    run = _locked_run(conn, run_id)
    if run is None:
        raise CannotResume(f"no run with id {run_id}")
    status = run["status"]
    if status == COMPLETED:
        raise CannotResume(f"run {run_id} is already completed")
    if status == RUNNING:
        beat = run["heartbeat_at"]
        if beat is not None and utcnow() - beat < timedelta(seconds=stale_after_s):
            raise CannotResume(f"run {run_id} is running (heartbeat {(utcnow() - beat).seconds} s ago); "
                               "cancel it first or wait until it is stale")
    if status != QUEUED:
        # A fresh start for the new attempt: no pending cancel, no old error, no old claim.
        transition(conn, run_id, QUEUED, expect=status, cancel_requested=False, error=None, worker_id=None,
                   pid=None, heartbeat_at=None)
    return status


def resume_runs(engine: Engine, run_ids: Sequence[int]) -> list[tuple[int, str]]:
    """Requeue each run for resuming; [(run id, what happened in words)]. One bad run stops none of the others."""
    out = []
    for run_id in run_ids:
        try:
            with write_tx(engine) as conn:
                was = requeue_for_resume(conn, run_id)
            out.append((run_id, f"run {run_id} queued to resume from its last checkpoint (it was {was})"
                        if was != QUEUED else f"run {run_id} is already queued"))
        except CannotResume as e:
            out.append((run_id, str(e)))
    return out


# ----------------------------------------------------------------------------------------- claim
def has_queued(engine: Engine, *, skip: Collection[int] = ()) -> bool:
    """A cheap read, so idle workers do not take SQLite's write lock every poll just to find nothing."""
    query = select(runs.c.id).where(runs.c.status == QUEUED)
    if skip:
        query = query.where(runs.c.id.notin_(list(skip)))
    with read_tx(engine) as conn:
        return conn.execute(query.limit(1)).first() is not None


def claim_next(engine: Engine, worker_id: str, device: str, *, max_devices: int | None = None,
               skip: Collection[int] = ()) -> dict[str, Any] | None:
    """Take the oldest queued run for `worker_id` on `device`; returns its row, or None if none is queued.

    `max_devices`: take only a run whose config asks for at most that many devices (the free GPUs
    of a worker); None for any. A run that does not fit waits for one that has room, and smaller
    runs behind it go first.

    One statement, so there is no window between choosing a run and taking it:
    SQLite runs it inside BEGIN IMMEDIATE (one writer at a time); PostgreSQL locks the chosen row
    with FOR UPDATE SKIP LOCKED, so concurrent workers each get a different row instead of
    queueing behind one another. The outer `status = 'queued'` re-check costs nothing and keeps
    the statement correct even without the lock. `skip`: runs this worker found it cannot run.
    """
    # The one status change that cannot go through transition() (it needs RETURNING on a row
    # chosen by a subquery); keep it honest against the same table of legal moves.
    if RUNNING not in ALLOWED[QUEUED]:
        raise IllegalTransition(f"a run cannot go from {QUEUED} to {RUNNING}")
    pick = select(runs.c.id).where(runs.c.status == QUEUED).order_by(runs.c.id).limit(1)
    if max_devices is not None:  # configs from before the `devices` field have none: one device
        pick = pick.where(func.coalesce(runs.c.config["devices"].as_integer(), 1) <= max_devices)
    if skip:
        pick = pick.where(runs.c.id.notin_(list(skip)))
    if not is_sqlite(engine):
        pick = pick.with_for_update(skip_locked=True)
    now = utcnow()
    stmt = (
        update(runs)
        .where(runs.c.id == pick.scalar_subquery(), runs.c.status == QUEUED)
        .values(status=RUNNING, worker_id=worker_id, device=device, pid=None, heartbeat_at=now, phase=STARTING,
                # started_at is the first start; a retried run keeps it (attempts tells the rest).
                started_at=func.coalesce(runs.c.started_at, now), attempts=runs.c.attempts + 1)
        .returning(*runs.c)
    )
    with write_tx(engine) as conn:
        row = conn.execute(stmt).mappings().first()
        return dict(row) if row else None


def release_claim(engine: Engine, run_id: int, worker_id: str, attempt: int, reason: str) -> bool:
    """Give back a run this worker claimed but cannot run (e.g. it asks for a device the worker lacks):
    queued again, the attempt not counted, `reason` shown on the run until some worker takes it."""
    with write_tx(engine) as conn:
        run = _locked_run(conn, run_id)
        if run is None or run["status"] != RUNNING or run["worker_id"] != worker_id or run["attempts"] != attempt:
            return False
        return transition(conn, run_id, QUEUED, expect=RUNNING, worker_id=None, pid=None, device=None,
                          heartbeat_at=None, attempts=attempt - 1, error=reason)


RECORDABLE = ("pid", "log_path", "device", "executor")


def record_process(engine: Engine, run_id: int, worker_id: str, **values: Any) -> bool:
    """Note where the run executes (`pid`, `log_path`, `device`, `executor`), only while it is still
    `worker_id`'s claim. Columns not given are left as they are."""
    unknown = set(values) - set(RECORDABLE)
    if unknown:
        raise TypeError(f"record_process: not a process column: {', '.join(sorted(unknown))}")
    with write_tx(engine) as conn:
        return conn.execute(update(runs).where(runs.c.id == run_id, runs.c.worker_id == worker_id,
                                               runs.c.status == RUNNING).values(**values)).rowcount == 1


# ----------------------------------------------------------------------- requeue / fail / recover
@dataclass(frozen=True)
class Outcome:
    run_id: int
    status: str  # what the run is now: queued (requeued), failed, cancelled, or unchanged
    message: str

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.message}"


def _locked_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    # FOR UPDATE is dropped by SQLAlchemy on SQLite, where BEGIN IMMEDIATE already serialises writers.
    row = conn.execute(select(runs).where(runs.c.id == run_id).with_for_update()).mappings().first()
    return dict(row) if row else None


def _requeue_or_fail(conn: Connection, run: Mapping[str, Any], reason: str, *,
                     consume_retry: bool = True) -> Outcome:
    """Decide the fate of a running run that lost its process (caller holds the row lock).

    cancel requested -> cancelled (the user wanted it stopped anyway; its checkpoint is kept);
    retries left (or a retry is not charged, e.g. a worker shut down on purpose) -> queued, to
    resume from its checkpoint on any worker; else -> failed with `reason`.
    """
    run_id = run["id"]
    if run["cancel_requested"]:
        transition(conn, run_id, CANCELLED, expect=RUNNING, error=f"cancelled; {reason}")
        return Outcome(run_id, CANCELLED, f"{reason}; it was being cancelled, so it is cancelled")
    retries = run["retries_left"]
    if not consume_retry or retries > 0:
        left = retries - 1 if consume_retry else retries
        # Clear the claim so the dashboard does not show a dead worker or pid on a queued run.
        transition(conn, run_id, QUEUED, expect=RUNNING, retries_left=left, worker_id=None, pid=None,
                   device=None, executor=None, heartbeat_at=None, error=None)
        return Outcome(run_id, QUEUED, f"{reason}; requeued to resume from its last checkpoint "
                                       f"({left} retr{'y' if left == 1 else 'ies'} left)")
    attempts = run["attempts"]
    error = f"{reason} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})"
    transition(conn, run_id, FAILED, expect=RUNNING, error=error)
    return Outcome(run_id, FAILED, error)


def recover_stale(engine: Engine, timeout_s: float = DEFAULT_STALE_AFTER_S, *,
                  now: datetime | None = None) -> list[Outcome]:
    """Requeue (or fail, with "worker lost") every running run whose heartbeat is older than `timeout_s`.

    Any worker may call this; running it twice at once is harmless (the row lock plus the
    re-check of the heartbeat under it means each stale run is handled once).
    """
    cutoff = (now or utcnow()) - timedelta(seconds=timeout_s)
    last_sign = func.coalesce(runs.c.heartbeat_at, runs.c.started_at, runs.c.created_at)
    stale = select(runs).where(runs.c.status == RUNNING, last_sign < cutoff).order_by(runs.c.id)
    with read_tx(engine) as conn:  # most calls find nothing: do not take the write lock for that
        if conn.execute(stale.limit(1)).first() is None:
            return []
    if not is_sqlite(engine):
        stale = stale.with_for_update(skip_locked=True)  # another worker is recovering those rows
    outcomes = []
    with write_tx(engine) as conn:
        for run in conn.execute(stale).mappings().all():
            outcomes.append(_requeue_or_fail(conn, run, f"worker lost: no heartbeat for {timeout_s:g} s"))
    return outcomes


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(returncode: int) -> str:
    """Words for a child's exit status (Popen: negative = killed by that signal)."""
    if returncode < 0:
        name = signal_name(-returncode)
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -returncode == signal.SIGKILL else ""
        return f"run process killed by {name}{hint}"
    if returncode == 0:
        return "run process exited without recording a result"
    return f"run process exited with code {returncode} without recording a result"


def finish_attempt(engine: Engine, run_id: int, worker_id: str, attempt: int, returncode: int | None,
                   *, reason: str | None = None, consume_retry: bool = True) -> Outcome:
    """Called by a worker when the process of its attempt `attempt` at run `run_id` has ended.

    Normally the child has already moved the run to completed/failed/cancelled and this changes
    nothing. If the run is still `running` under this same claim, the child died without saying
    how (killed, segfault, crash before its own error handling): requeue it or fail it. If the
    run was meanwhile recovered and claimed again by someone else, it is not ours to touch.
    """
    with write_tx(engine) as conn:
        run = _locked_run(conn, run_id)
        if run is None:
            return Outcome(run_id, "deleted", "run no longer exists")
        if run["status"] != RUNNING or run["worker_id"] != worker_id or run["attempts"] != attempt:
            return Outcome(run_id, run["status"], f"ended {run['status']}")
        why = reason or describe_exit(returncode if returncode is not None else 0)
        return _requeue_or_fail(conn, run, why, consume_retry=consume_retry)


def claim_states(engine: Engine, claims: Mapping[int, int], worker_id: str) -> dict[int, str]:
    """For each of `claims` ({run_id: attempt}): "ours" (still running under this claim), "finished"
    (completed, failed or cancelled: the process is just exiting) or "lost" (requeued, claimed again
    by someone else, or deleted: this process must not go on writing to it)."""
    if not claims:
        return {}
    query = select(runs.c.id, runs.c.status, runs.c.worker_id, runs.c.attempts).where(runs.c.id.in_(list(claims)))
    with read_tx(engine) as conn:
        found = {r.id: r for r in conn.execute(query)}
    states = {}
    for run_id, attempt in claims.items():
        r = found.get(run_id)
        if r is not None and r.status in FINISHED:
            states[run_id] = "finished"
        elif r is not None and r.status == RUNNING and r.worker_id == worker_id and r.attempts == attempt:
            states[run_id] = "ours"
        else:
            states[run_id] = "lost"
    return states


def cancel_requested(engine: Engine, run_ids: list[int]) -> set[int]:
    if not run_ids:
        return set()
    query = select(runs.c.id).where(runs.c.id.in_(run_ids), runs.c.cancel_requested.is_(True))
    with read_tx(engine) as conn:
        return set(conn.execute(query).scalars())


# ------------------------------------------------------------------------------------ Ray claims
# A run the Ray dispatcher took is claimed by its Ray job: worker_id = "ray:" + the job's submission
# id, which names the run and the attempt. The claim outlives the dispatcher (a restarted one finds
# its runs by this prefix and asks Ray about each), and the run's process checks it (SIMCLR_CLAIM),
# so a job of an attempt that was given up never trains the run again.
RAY_CLAIM_PREFIX = "ray:"


def ray_claims(engine: Engine) -> list[dict[str, Any]]:
    """Running runs claimed by a Ray job, oldest first."""
    query = (select(runs.c.id, runs.c.worker_id, runs.c.attempts, runs.c.executor, runs.c.cancel_requested,
                    runs.c.config, runs.c.log_path)
             .where(runs.c.status == RUNNING, runs.c.worker_id.startswith(RAY_CLAIM_PREFIX)).order_by(runs.c.id))
    with read_tx(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def hand_over_claim(engine: Engine, run_id: int, old: str, new: str) -> bool:
    """Pass a just-claimed run from `old` (the claimant) to `new`; False when it is no longer `old`'s.

    The device is cleared: the run's process records the one it really trains on.
    """
    with write_tx(engine) as conn:
        return conn.execute(update(runs).where(runs.c.id == run_id, runs.c.worker_id == old, runs.c.status == RUNNING)
                            .values(worker_id=new, device=None)).rowcount == 1


def fail_claim(engine: Engine, run_id: int, claim: str, error: str) -> bool:
    """Fail a run that can never run as claimed (e.g. more GPUs than any machine has); no retry helps."""
    with write_tx(engine) as conn:
        return transition(conn, run_id, FAILED, expect=RUNNING, claimed_by=claim, error=error)


def heartbeat_claims(engine: Engine, claims: Sequence[str]) -> None:
    """Mark alive the running runs held by these claims (Ray jobs that Ray says are pending or running)."""
    if claims:
        with write_tx(engine) as conn:
            conn.execute(update(runs).where(runs.c.status == RUNNING, runs.c.worker_id.in_(list(claims)))
                         .values(heartbeat_at=utcnow()))


# --------------------------------------------------------------------------------------- workers
def register_worker(engine: Engine, worker_id: str, *, hostname: str, pid: int, slots: int, devices: str) -> None:
    now = utcnow()
    with write_tx(engine) as conn:
        conn.execute(insert(workers).values(id=worker_id, hostname=hostname, pid=pid, slots=slots, devices=devices,
                                            started_at=now, heartbeat_at=now, stopped_at=None))


def heartbeat(engine: Engine, worker_id: str, run_ids: list[int]) -> None:
    """Mark the worker alive, and with it the runs whose processes it has just seen alive.

    The run processes heartbeat on their own too; this covers the seconds a child spends
    starting up (importing torch can take many seconds on a loaded machine) before its own
    heartbeat begins, so a short stale timeout never requeues a run that is merely slow to start.
    """
    now = utcnow()
    with write_tx(engine) as conn:
        conn.execute(update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now))
        if run_ids:
            conn.execute(update(runs).where(runs.c.id.in_(run_ids), runs.c.status == RUNNING,
                                            runs.c.worker_id == worker_id).values(heartbeat_at=now))


def worker_stopped(engine: Engine, worker_id: str) -> None:
    with write_tx(engine) as conn:
        conn.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=utcnow()))


def live_workers(engine: Engine, within_s: float = DEFAULT_STALE_AFTER_S) -> list[dict[str, Any]]:
    """Workers that have not stopped and heartbeated within `within_s` (for the dashboard and `runs`)."""
    cutoff = utcnow() - timedelta(seconds=within_s)
    query = select(workers).where(workers.c.stopped_at.is_(None), workers.c.heartbeat_at >= cutoff) \
        .order_by(workers.c.started_at)
    with read_tx(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def running_count(engine: Engine) -> int:
    with read_tx(engine) as conn:
        return conn.execute(select(func.count()).select_from(runs).where(runs.c.status == RUNNING)).scalar_one()


# ---------------------------------------------------------------------------------------- sweeps
MAX_SWEEP_RUNS = 1000  # a typo like seed=0..9999 should be an error, not ten thousand queued runs
MAX_GRID_TEXT = 10_000  # characters in one --grid entry: far more than 1000 values need
MAX_NAME_CHARS = 200  # runs.name is String(200)
MAX_RETRIES = 100


class SweepError(ValueError):
    """A grid that cannot be enqueued; nothing was enqueued."""


def parse_grid(entries: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`["batch_size=64,128", "subset-size=300,1500"]` -> [(field, [text values]), ...], fields checked."""
    known = {f.name for f in config_fields()}
    grid: list[tuple[str, list[str]]] = []
    for entry in entries:
        if len(entry) > MAX_GRID_TEXT:
            raise SweepError(f"--grid {entry[:40]}...: {len(entry)} characters; at most {MAX_GRID_TEXT}")
        key, sep, text = entry.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        values = [v.strip() for v in text.split(",")]
        if not sep or not key or not text.strip() or "" in values:
            raise SweepError(f"--grid {entry!r}: expected FIELD=V1,V2,... (e.g. batch_size=64,128)")
        if key not in known:
            raise SweepError(f"--grid {entry!r}: unknown configuration field {key!r} (known: {', '.join(sorted(known))})")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid: {key} given twice; list all its values in one --grid {key}=...")
        if len(values) > MAX_SWEEP_RUNS:
            raise SweepError(f"--grid {key}: {len(values)} values; at most {MAX_SWEEP_RUNS} runs may be enqueued at once")
        _refuse_duplicates(entry, key, values)
        grid.append((key, values))
    return grid


def _refuse_duplicates(entry: str, key: str, values: Sequence[str]) -> None:
    """Compare values as values, not text: 64 and 64.0 (or 0.1 and 1e-1) are one run twice."""
    seen: dict[Any, str] = {}
    for text in values:
        try:
            value = coerce_field(key, text)
        except ConfigError as e:
            raise SweepError(f"--grid {entry!r}: {e}") from None
        if value in seen:
            raise SweepError(f"--grid {entry!r}: {seen[value]} and {text} are the same value "
                             "(vary seed to repeat a run)" if seen[value] != text else
                             f"--grid {entry!r}: {text} is listed twice (vary seed to repeat a run)")
        seen[value] = text


def combo_label(combo: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in combo.items())


def expand_grid(base: Mapping[str, Any], grid: Sequence[tuple[str, Sequence[Any]]], *,
                build: Callable[[dict[str, Any]], RunConfig] = config_from_text) -> list[tuple[dict[str, Any], RunConfig]]:
    """Every combination of `grid` over `base`, each validated; [(combination, config), ...].

    Validates all of them before returning any, and reports every bad combination, not only the
    first: fixing a grid one error per attempt is tedious.
    """
    clash = [k for k, _ in grid if k in base]
    if clash:
        raise SweepError(f"{clash[0]} is given both as a single value and in --grid; use one of them")
    keys = [k for k, _ in grid]
    # Counted from the value counts, before a single combination is built: 10 million of them
    # would take gigabytes just to be refused.
    count = math.prod(len(v) for _, v in grid)
    if count > MAX_SWEEP_RUNS:
        raise SweepError(f"the grid has {count:,} combinations; at most {MAX_SWEEP_RUNS} may be enqueued at once")
    combos = [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]
    built, bad = [], []
    for combo in combos:
        try:
            built.append((combo, build({**base, **combo})))
        except ConfigError as e:
            bad.append(f"  {combo_label(combo) or '(the base configuration)'}: {e}")
    if bad:
        raise SweepError(f"{len(bad)} of {len(combos)} combination{'s' if len(combos) != 1 else ''} "
                         f"{'is' if len(bad) == 1 else 'are'} invalid; nothing was enqueued:\n" + "\n".join(bad))
    return built


def check_submission(name: str | None, retries: int) -> None:
    """The free values of a submission besides the config: a name and a retry count."""
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise SweepError(f"--name: at most {MAX_NAME_CHARS} characters; got {len(name)}")
    if name is not None and any(ord(c) < 32 for c in name):
        raise SweepError("--name: control characters (newlines, tabs...) are not allowed")
    if not 0 <= retries <= MAX_RETRIES:
        raise SweepError(f"--retries must be between 0 and {MAX_RETRIES}; got {retries}")


def _clip(text: str) -> str:
    """A sweep run's name is the name plus its grid values: keep it within the column."""
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS - 3] + "..."


def new_sweep_id() -> str:
    return f"sweep-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def enqueue(engine: Engine, plan: Sequence[tuple[Mapping[str, Any], RunConfig]], *, sweep: bool,
            name: str | None = None, retries: int = 1) -> tuple[str | None, list[tuple[int, str]]]:
    """Insert the runs of `plan` (from expand_grid), all or none, as one sweep when `sweep`.

    Returns (sweep id or None, [(run id, combination label), ...]).
    """
    check_submission(name, retries)
    sweep_id = new_sweep_id() if sweep else None
    labels = [combo_label(combo) for combo, _ in plan]
    names = [_clip(" ".join(p for p in (name, label) if p)) or None for label in labels]
    ids = create_runs(engine, [cfg for _, cfg in plan], names=names, sweep_id=sweep_id, retries=retries)
    return sweep_id, list(zip(ids, labels))
