"""The job queue: claim, cancel, requeue, recover, and the `workers` registry.

Every status change here goes through `db.status.transition` except the claim itself, which must
be a single `UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING` so that two workers can never
take the same run (see `claim_next`). Decisions about one run (requeue it? fail it?) read the row
under a lock first: BEGIN IMMEDIATE on SQLite (the whole database is ours until commit),
SELECT ... FOR UPDATE on PostgreSQL (the row is ours until commit), so a heartbeat or a
completion that lands meanwhile cannot be overwritten by a stale decision.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from sqlalchemy import Connection, Engine, Select, func, insert, select, update

from db.config import ConfigError, RunConfig, runs_root
from db.heartbeat import STALE_AFTER_S, is_stale, last_sign_of_life
from db.identity import database_id
from db.models import runs, workers
from db.queries import run_values
from db.session import is_sqlite, read_tx, write_tx
from db.status import (ALLOWED, CANCELLED, COMPLETED, FAILED, FINISHED, QUEUED, RUNNING, STARTING, IllegalTransition,
                       transition, utcnow)

# The claimant (worker_id) a run's process was started for, when the process may start late (a Ray
# job waiting for resources); with its attempt number (argv) it is the claim the process checks.
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
class CannotResume(ConfigError):
    """The run cannot be resumed now; the message says why."""

    def __init__(self, message: str):
        super().__init__("resume", message)


RESUMABLE = (FAILED, CANCELLED)


def requeue_for_resume(conn: Connection, run_id: int) -> str:
    """Put a failed, cancelled or dead run back in the queue, to continue from its last checkpoint.

    One rule for `train --resume` (`claim_for_resume` claims it in the same transaction) and the
    dashboard's Resume button (a worker claims it). Returns the status it had. Raises CannotResume
    for a completed run or a running one that is not stale by its worker's limit. A queued run is
    left as it is.
    """
    run = _locked_run(conn, run_id, with_limit=True)
    if run is None:
        raise CannotResume(f"no run with id {run_id}")
    status = run["status"]
    if status == COMPLETED:
        raise CannotResume(f"run {run_id} is already completed")
    if status == RUNNING and not is_stale(run, utcnow()):
        last = last_sign_of_life(run)
        age = f"heartbeat {(utcnow() - last).seconds} s ago" if last else "no heartbeat yet"
        raise CannotResume(f"run {run_id} is running ({age}); cancel it first or wait until it is stale")
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
            out.append((run_id, e.message))
    return out


# ----------------------------------------------------------------------------------------- claim
def has_queued(engine: Engine, *, skip: Collection[int] = ()) -> bool:
    """A cheap read, so idle workers do not take SQLite's write lock every poll just to find nothing."""
    query = select(runs.c.id).where(runs.c.status == QUEUED)
    if skip:
        query = query.where(runs.c.id.notin_(list(skip)))
    with read_tx(engine) as conn:
        return conn.execute(query.limit(1)).first() is not None


def claim_next(engine: Engine, worker_id: str, device: str | None, *, run_id: int | None = None,
               pid: int | None = None, executor: str | None = None, max_devices: int | None = None,
               skip: Collection[int] = ()) -> dict[str, Any] | None:
    """Take the oldest queued run (or run `run_id`, if it is queued) for `worker_id` on `device`;
    returns its row, or None if there is none to take.

    `max_devices`: take only a run whose config asks for at most that many devices (the free GPUs
    of a worker); None for any. A run that does not fit waits for one that has room, and smaller
    runs behind it go first.

    Every start of a run goes through the one claim statement below (`_claim`): a worker's slot
    here, `train` in the foreground and the benchmarks through `create_and_claim`, `train --resume`
    through `claim_for_resume`. So every run has a claimant and an attempt number, and (worker,
    attempt) is what the run's process and its worker check before they write.
    """
    with write_tx(engine) as conn:
        return _claim(conn, worker_id, device, run_id=run_id, pid=pid, executor=executor, max_devices=max_devices,
                      skip=skip)


def _claim(conn: Connection, worker_id: str, device: str | None, *, run_id: int | None, pid: int | None,
           executor: str | None = None, max_devices: int | None = None,
           skip: Collection[int] = ()) -> dict[str, Any] | None:
    """The claim statement. One statement, so there is no window between choosing a run and taking it:
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
    if run_id is not None:
        pick = pick.where(runs.c.id == run_id)
    if max_devices is not None:  # configs from before the `devices` field have none: one device
        pick = pick.where(func.coalesce(runs.c.config["devices"].as_integer(), 1) <= max_devices)
    if skip:
        pick = pick.where(runs.c.id.notin_(list(skip)))
    if conn.dialect.name != "sqlite":
        pick = pick.with_for_update(skip_locked=True)
    now = utcnow()
    stmt = (
        update(runs)
        .where(runs.c.id == pick.scalar_subquery(), runs.c.status == QUEUED)
        .values(status=RUNNING, worker_id=worker_id, device=device, pid=pid, executor=executor, heartbeat_at=now,
                phase=STARTING,
                # started_at is the first start; a retried run keeps it (attempts tells the rest).
                started_at=func.coalesce(runs.c.started_at, now), attempts=runs.c.attempts + 1,
                # A resubmitted run starts clean: an old cancel request or error is not this attempt's.
                cancel_requested=False, error=None)
        .returning(*runs.c)
    )
    row = conn.execute(stmt).mappings().first()
    return dict(row) if row else None


def create_and_claim(engine: Engine, cfg: RunConfig, worker_id: str, *, name: str | None = None,
                     pid: int | None = None, device: str | None = None, executor: str | None = None) -> dict[str, Any]:
    """A new run of `cfg`, claimed at once by `worker_id` (`train` in the foreground, benchmarks).

    Inserted and claimed in one transaction: a worker polling the queue never sees it queued.
    """
    with write_tx(engine) as conn:
        run_id = conn.execute(insert(runs).values(**run_values(cfg, name=name))).inserted_primary_key[0]
        claimed = _claim(conn, worker_id, device, run_id=run_id, pid=pid, executor=executor)
        assert claimed is not None, "a run inserted in this transaction is queued"
        return claimed


def claim_for_resume(engine: Engine, run_id: int, worker_id: str, *, pid: int | None = None,
                     executor: str | None = None) -> dict[str, Any]:
    """Requeue run `run_id` (`requeue_for_resume`) and claim it, in one transaction so that no worker
    can take it in between; CannotResume (a ConfigError on "resume") when it cannot be resumed."""
    with write_tx(engine) as conn:
        requeue_for_resume(conn, run_id)
        claimed = _claim(conn, worker_id, None, run_id=run_id, pid=pid, executor=executor)
        assert claimed is not None, "a queued run under our write lock must be claimable"
        return claimed


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


def runs_with_stale_limit() -> Select:
    """SELECT runs.*, plus the stale_after_s of the worker that claimed each (NULL: none known)."""
    return select(runs, workers.c.stale_after_s).select_from(runs.outerjoin(workers, runs.c.worker_id == workers.c.id))


def _locked_run(conn: Connection, run_id: int, *, with_limit: bool = False) -> dict[str, Any] | None:
    query = runs_with_stale_limit() if with_limit else select(runs)
    # FOR UPDATE is dropped by SQLAlchemy on SQLite, where BEGIN IMMEDIATE already serialises writers.
    # `of=runs`: PostgreSQL cannot lock the nullable side of an outer join, and need not.
    row = conn.execute(query.where(runs.c.id == run_id).with_for_update(of=runs)).mappings().first()
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


def recover_stale(engine: Engine, timeout_s: float = STALE_AFTER_S, *,
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


def beat_run(engine: Engine, run_id: int, worker_id: str, attempt: int) -> str:
    """A run's own heartbeat, from its process: "ours" (marked alive), "cancel" (marked alive, and a
    cancel was requested), or "lost" (requeued, claimed again by anyone, or deleted: this process
    must stop writing to it). The claim is (worker, attempt), exactly as the worker checks it."""
    mine = (runs.c.id == run_id) & (runs.c.status == RUNNING) & (runs.c.worker_id == worker_id) \
        & (runs.c.attempts == attempt)
    with write_tx(engine) as conn:
        if conn.execute(update(runs).where(mine).values(heartbeat_at=utcnow())).rowcount == 0:
            return "lost"
        cancel = conn.execute(select(runs.c.cancel_requested).where(runs.c.id == run_id)).scalar()
        return "cancel" if cancel else "ours"


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
def register_worker(engine: Engine, worker_id: str, *, hostname: str, pid: int, slots: int, devices: str,
                    stale_after_s: float = STALE_AFTER_S) -> None:
    now = utcnow()
    with write_tx(engine) as conn:
        conn.execute(insert(workers).values(id=worker_id, hostname=hostname, pid=pid, slots=slots, devices=devices,
                                            started_at=now, heartbeat_at=now, stopped_at=None,
                                            stale_after_s=stale_after_s))


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


DISPATCHER_DEVICES = "ray "  # prefix of a Ray dispatcher's `devices` in the workers table


def is_dispatcher(worker: Mapping[str, Any]) -> bool:
    """Whether a row of the workers table is a Ray dispatcher rather than a worker with slots."""
    return (worker["devices"] or "").startswith(DISPATCHER_DEVICES)


def _slot_devices(worker: Mapping[str, Any]) -> list[str]:
    """A worker's slot devices (`cpu`, `cuda:0`, ...), one per slot, as registered."""
    return (worker["devices"] or "").split(",")


def gpus_per_worker(workers: Sequence[Mapping[str, Any]]) -> int | None:
    """The most distinct GPUs one of `workers` (rows of live_workers) can give a run; None when a
    Ray dispatcher is among them (Ray places its jobs on the cluster's GPUs itself)."""
    if any(map(is_dispatcher, workers)):
        return None
    # Slots on one GPU repeat its name: distinct GPUs count.
    return max((len({d for d in _slot_devices(w) if d.startswith("cuda")}) for w in workers), default=0)


def unservable(runs: Sequence[Mapping[str, Any]], workers: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ids of the queued `runs` that ask for more GPUs than any live worker of `workers` has: they
    wait until a bigger worker starts (claim_next passes them over, silently).

    A run on `cpu` is not counted (its processes share a CPU slot, whatever their number), nor an
    `auto` one while a CPU slot is there to take it; a `cuda` run needs that many distinct GPUs."""
    gpus = gpus_per_worker(workers)
    if gpus is None or not workers:
        return []
    has_cpu = any("cpu" in _slot_devices(w) for w in workers)
    stuck = []
    for r in runs:
        cfg = r.get("config") or {}
        device = cfg.get("device") or "auto"
        if r["status"] != QUEUED or device == "cpu" or (device == "auto" and has_cpu):
            continue
        if (cfg.get("devices") or 1) > gpus:
            stuck.append(r["id"])
    return stuck


def too_big_message(run_ids: Sequence[int], gpus: int | None) -> str:
    """What the dashboard and `submit` say of runs that no live worker can take (see unservable)."""
    which = f"run{'s' if len(run_ids) > 1 else ''} {', '.join(map(str, run_ids))}"
    return (f"{which} ask{'' if len(run_ids) > 1 else 's'} for more GPUs than any live worker has (at most {gpus} "
            "each): queued until a worker with that many starts (`python -m engine worker --devices "
            "cuda:0,cuda:1,...`) or a Ray dispatcher; cancel to drop")


def live_workers(engine: Engine) -> list[dict[str, Any]]:
    """Workers that have not stopped and heartbeated within their own --stale-after (the dashboard,
    and its check whether a local worker is needed)."""
    query = select(workers).where(workers.c.stopped_at.is_(None)).order_by(workers.c.started_at)
    now = utcnow()
    with read_tx(engine) as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return [w for w in rows if not is_stale(w, now)]


def running_count(engine: Engine) -> int:
    with read_tx(engine) as conn:
        return conn.execute(select(func.count()).select_from(runs).where(runs.c.status == RUNNING)).scalar_one()
