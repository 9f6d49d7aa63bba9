"""The Ray dispatcher: queued runs become Ray jobs, and Ray's job states flow back into the database.

    python -m engine dispatch --ray http://HEAD:8265 [--cpus-per-run N] [--max-pending N]

The database stays the source of truth for runs and metrics; Ray only executes. Each attempt of a
run is one Ray job (Ray's Job Submission API), whose process is the same `python -m engine execute
ID` a local worker starts: it writes metrics and heartbeats straight to the database.

- Submission id `simclr-run<ID>-attempt<N>-<tag>` (<tag>: a hash of the database URL and the run's
  creation time, so two labs, or one database recreated, never collide on a shared cluster). Ray
  refuses a second job with an id it knows, so an attempt is never submitted twice.
- The run is claimed by its job: worker_id "ray:<submission id>" (db/queue.py), which survives the
  dispatcher. The job's process gets the claim in SIMCLR_CLAIM and trains only while it holds.
- The project code travels as the job's runtime_env working_dir (this checkout without .venv,
  runs/, data/, artifacts/, .git); the database URL, run folder and cache paths as env_vars.
- Resources: the run's device count in GPUs when it trains on a GPU (device cuda*, or auto on a
  cluster that has GPUs; Ray then sets CUDA_VISIBLE_DEVICES), else no GPU and CUDA hidden;
  --cpus-per-run CPUs (also the run's thread count).

A submission goes: claim the oldest queued run (as this dispatcher) -> hand the claim to the job's
id -> submit -> record the executor. A dispatcher that crashes in between is safe to restart: a
run claimed but not handed over loses its heartbeat and is requeued like any lost worker's run; a
claim with no executor yet is looked up in Ray and submitted only if Ray has never seen it.

Every poll, for each run claimed by a Ray job:
  PENDING / RUNNING             -> the run is alive (heartbeated; the process heartbeats itself too)
  SUCCEEDED / FAILED / STOPPED  -> the process has exited; the run should be final. If it is still
  (or unknown to Ray)              running under this claim, the process ended without recording a
                                   result (killed, node lost): requeued while retries remain, to
                                   resume from its checkpoint, else failed with Ray's message.
Cancel: the run's own heartbeat sees the request within seconds and stops at the next step; a
job still running `--cancel-grace` seconds later (or still pending) is stopped through Ray.

SIGTERM / Ctrl-C stops the dispatcher only: Ray jobs keep running, and the next dispatcher
reconciles them. A job still pending after its run was requeued as stale meanwhile (no dispatcher
heartbeated it for --stale-after seconds) is stopped by the next one. One dispatcher per database
(it refuses to start next to a live one).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from db import executor, queue
from db.config import PROJECT_ROOT, RunConfig, run_dir, runs_root
from db.queries import get_run, update_run
from db.heartbeat import HEARTBEAT_S, STALE_AFTER_S, check_stale_after
from db.identity import ENV_VAR as DB_ID_VAR
from db.identity import database_id
from db.queue import CLAIM_ENV, DISPATCHER_DEVICES, RAY_CLAIM_PREFIX
from db.session import default_url, make_engine
from db.status import RUNNING, utcnow
from engine.jobs.launch import with_processes
from engine.jobs.worker import mark_stopped, on_stop_signals

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
CANCEL_GRACE_S = 60.0
CLUSTER_INFO_EVERY_S = 30.0
# Not shipped with a job: the environment, run folders, data sets, outputs, history.
RUNTIME_EXCLUDES = ["/.venv", "/runs/", "/data/", "/artifacts/", "/.git", "__pycache__/", "*.pyc",
                    "/.pytest_cache/"]


class DispatchError(RuntimeError):
    """The dispatcher cannot start (Ray unreachable, another dispatcher alive, bad option)."""


# ----------------------------------------------------------------------------------- the job itself
def job_entrypoint(run_id: int, attempt: int, cfg: RunConfig) -> str:
    """The command of a run's Ray job: the same launch as a local worker's (torchrun with one process
    per device when the run has several), with the attempt it was submitted for. `python` is the
    node's: start Ray from the project's venv."""
    return shlex.join(with_processes(["python", "-m", "engine", "execute", str(run_id), "--attempt", str(attempt)],
                                     cfg.devices))


def gpus_for(cfg: RunConfig, cluster_has_gpus: bool) -> int:
    """GPUs the job requests: the run's device count when it trains on a GPU, else none."""
    on_gpu = cfg.device.startswith("cuda") or (cfg.device == "auto" and cluster_has_gpus)
    return cfg.devices if on_gpu else 0


SUBMISSION_ID = re.compile(r"simclr-run(?P<run>\d+)-attempt(?P<attempt>\d+)-[0-9a-f]{8}")


def submission_id(db_url: str, run: dict[str, Any]) -> str:
    """The Ray submission id of the run's current attempt (run["attempts"], just incremented by the claim)."""
    where = make_url(db_url).render_as_string(hide_password=True)
    tag = hashlib.sha1(f"{where}|{run['created_at'].isoformat()}".encode()).hexdigest()[:8]
    return f"simclr-run{run['id']}-attempt{run['attempts']}-{tag}"


def job_env(db_url: str, claim: str, gpus: int, cpus: int, processes: int = 1) -> dict[str, str]:
    """The job's environment. Paths are this machine's: on other nodes they must name shared storage."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and not os.path.isabs(url.database):
        # A relative SQLite path would be read from the job's own working directory (one machine only).
        db_url = url.set(database=os.path.abspath(url.database)).render_as_string(hide_password=False)
    env = {
        "SIMCLR_DB": db_url, CLAIM_ENV: claim, "PYTHONUNBUFFERED": "1",
        # Absolute: the job runs in a throw-away copy of the code, where the defaults (under the
        # project) would be lost with it, and a requeued run would find no checkpoint.
        "SIMCLR_RUNS_DIR": str(runs_root().resolve()),
        "SIMCLR_CACHE": os.environ.get("SIMCLR_CACHE") or str(PROJECT_ROOT / "runs" / "cache"),
    }
    # The job's CPUs split between its processes (torchrun would otherwise give each one thread).
    env["SIMCLR_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(max(1, cpus // processes))
    if os.environ.get("SIMCLR_HEARTBEAT_S"):
        env["SIMCLR_HEARTBEAT_S"] = os.environ["SIMCLR_HEARTBEAT_S"]
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU run must not wander onto a GPU another job was given
    return env


def job_message(message: str) -> str:
    """Ray's message on an ended job, in one line for the run's error (Ray appends the job's last logs;
    the run's log has them), with the signal named when the shell reports one as 128 + N."""
    line = message.strip().splitlines()[0] if message.strip() else "no message"
    line = line.split(", last available logs")[0].rstrip(".:")
    code = re.search(r"exit code (\d+)$", line)
    if code and 128 < int(code[1]) < 128 + 65:
        line += f" (killed by {queue.signal_name(int(code[1]) - 128)})"
    return line


def runtime_env(env: dict[str, str]) -> dict[str, Any]:
    return {"working_dir": str(PROJECT_ROOT), "excludes": list(RUNTIME_EXCLUDES), "env_vars": env}


# ------------------------------------------------------------------------------------- Ray's side
@dataclass(frozen=True)
class JobView:
    status: str  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str
    node_ip: str | None


class Jobs(Protocol):
    """What the dispatcher needs of Ray (RayJobs; the tests' fake)."""

    def submit(self, sid: str, entrypoint: str, *, num_gpus: int, num_cpus: int, env: dict[str, str]) -> bool: ...
    def info(self, sid: str) -> JobView | None: ...
    def stop(self, sid: str) -> None: ...
    def logs(self, sid: str) -> str: ...
    def gpus_per_node(self) -> list[int]: ...
    def pending(self) -> list[str]: ...


class RayJobs:
    """Ray's Job Submission API, at `address` (the head's dashboard, http://HEAD:8265).

    With token authentication (on by default in recent Ray), RAY_AUTH_MODE=token and RAY_AUTH_TOKEN
    (or the token file ~/.ray/auth_token) must be set for this process as for `ray start`.
    """

    def __init__(self, address: str):
        from ray.job_submission import JobSubmissionClient  # Ray is only needed by the dispatcher

        self.address = address
        self.client = JobSubmissionClient(address)

    def submit(self, sid: str, entrypoint: str, *, num_gpus: int, num_cpus: int, env: dict[str, str]) -> bool:
        """Submit; False when Ray already has a job with this id (submitted before a crash)."""
        try:
            self.client.submit_job(entrypoint=entrypoint, submission_id=sid, runtime_env=runtime_env(env),
                                   entrypoint_num_gpus=num_gpus, entrypoint_num_cpus=num_cpus,
                                   metadata={"simclr_run": sid.split("-")[1][3:], "gpus": str(num_gpus)})
        except RuntimeError as e:
            if "already exists" in str(e):
                return False
            raise
        return True

    def info(self, sid: str) -> JobView | None:
        try:
            info = self.client.get_job_info(sid)
        except RuntimeError as e:
            if "does not exist" in str(e):
                return None
            raise
        node = urlparse(info.driver_agent_http_address).hostname if info.driver_agent_http_address else None
        return JobView(info.status.value, info.message or "", node)

    def stop(self, sid: str) -> None:
        self.client.stop_job(sid)

    def logs(self, sid: str) -> str:
        return self.client.get_job_logs(sid)

    def pending(self) -> list[str]:
        """Submission ids of this lab's jobs (any database's) that wait to start."""
        return [j.submission_id for j in self.client.list_jobs()
                if j.submission_id and "simclr_run" in (j.metadata or {}) and j.status.value == "PENDING"]

    def gpus_per_node(self) -> list[int]:
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.address, detail=True)
        return [int(n.resources_total.get("GPU", 0)) for n in nodes if n.state == "ALIVE"]


# ---------------------------------------------------------------------------------------- dispatcher
class Dispatcher:
    def __init__(self, db_url: str | None, jobs: Jobs, *, dashboard: str | None = None, cpus_per_run: int = 1,
                 max_pending: int = 2, poll_s: float = 1.0, heartbeat_s: float = HEARTBEAT_S,
                 cancel_grace_s: float = CANCEL_GRACE_S, stale_after_s: float = STALE_AFTER_S,
                 exit_when_idle: bool = False, log: Callable[[str], None] | None = None):
        if cpus_per_run < 1 or max_pending < 1:
            raise DispatchError("--cpus-per-run and --max-pending must be at least 1")
        self.url = db_url or default_url()
        self.engine = make_engine(self.url)
        self.database_id = database_id(self.engine)  # names run folders; each job checks it (db/identity.py)
        self.jobs, self.dashboard = jobs, dashboard
        self.cpus_per_run, self.max_pending, self.poll_s = cpus_per_run, max_pending, poll_s
        self.heartbeat_s, self.cancel_grace_s, self.stale_after_s = heartbeat_s, cancel_grace_s, stale_after_s
        self.exit_when_idle = exit_when_idle
        self.hostname = socket.gethostname()
        self.id = f"ray-dispatcher:{self.hostname}:{os.getpid()}:{int(time.time())}"
        self._log = log or (lambda m: print(m, flush=True))
        self.stopping = False
        self._cancel_seen: dict[str, float] = {}  # submission id -> when its run's cancel was first seen
        self._stopped: set[str] = set()  # jobs this dispatcher asked Ray to stop
        self._watched: dict[str, tuple[int, int]] = {}  # submission id -> (run id, attempt): logs to collect
        self._gpus: list[int] | None = None
        self._gpus_at = self._orphans_at = float("-inf")
        self._last_beat = self._last_recover = float("-inf")

    def log(self, message: str) -> None:
        self._log(f"{utcnow():%Y-%m-%d %H:%M:%S} {message}")

    # ---------------------------------------------------------------- public
    def run(self) -> int:
        self._refuse_second_dispatcher()
        queue.register_worker(self.engine, self.id, hostname=self.hostname, pid=os.getpid(), slots=self.max_pending,
                              devices=f"{DISPATCHER_DEVICES}{getattr(self.jobs, 'address', 'cluster')}",
                              stale_after_s=self.stale_after_s)
        self.log(f"dispatcher {self.id}: Ray at {getattr(self.jobs, 'address', '?')}, "
                 f"database {self.engine.url.render_as_string(hide_password=True)}")
        restore = self._install_signal_handlers()
        try:
            while not self.stopping:
                busy = self.tick()
                if self.exit_when_idle and not busy:
                    break
                time.sleep(self.poll_s)
        finally:
            restore()
            mark_stopped(self.engine, self.id, "dispatcher", self.log)
            self.log(f"dispatcher {self.id} stopped; Ray jobs it started keep running")
        return 0

    def tick(self) -> bool:
        """One pass: heartbeat, recover, reconcile, submit. Returns whether anything is left to do."""
        try:
            now = time.monotonic()
            beat = now - self._last_beat >= self.heartbeat_s
            if beat:
                queue.heartbeat(self.engine, self.id, [])
            if now - self._last_recover >= max(1.0, min(10.0, self.stale_after_s / 4)):
                for outcome in queue.recover_stale(self.engine, self.stale_after_s):
                    self.log(str(outcome))
                self._last_recover = now
            current, pending = self._reconcile(now, beat)
            if beat:
                self._last_beat = now
            if not self.stopping:
                pending = self._fill(pending)
            self._collect_logs(current)
            if now - self._orphans_at >= CLUSTER_INFO_EVERY_S:
                self._stop_orphans()
                self._orphans_at = now
            return bool(current or pending or self._watched) or queue.has_queued(self.engine) \
                or queue.running_count(self.engine) > 0
        except DBAPIError as e:
            self.log(f"database error, retrying: {str(e).splitlines()[0]}")
        except (OSError, RuntimeError) as e:  # connection errors are OSErrors; Ray's HTTP errors RuntimeErrors
            self.log(f"Ray error, retrying: {str(e).strip().splitlines()[0] if str(e).strip() else repr(e)}")
        return True

    def request_stop(self) -> None:
        self.stopping = True

    # ---------------------------------------------------------------- reconcile
    def _reconcile(self, now: float, beat: bool) -> tuple[set[str], int]:
        """Bring every Ray-claimed run in step with its job; returns (their submission ids, jobs pending)."""
        claims = queue.ray_claims(self.engine)
        alive, pending = [], 0
        for run in claims:
            claim = run["worker_id"]
            sid = claim[len(RAY_CLAIM_PREFIX):]
            self._watched[sid] = (run["id"], run["attempts"])
            job = self.jobs.info(sid)
            if job is None and run["executor"] is None:  # handed over, then the dispatcher stopped
                if self._submit(run, sid):
                    alive.append(claim)
                    pending += 1
                continue
            if job is None:
                self._lost(run, sid, f"its Ray job {sid} is unknown to the cluster (did the Ray head restart?)")
                continue
            if job.status in TERMINAL:
                self._lost(run, sid, f"Ray job {sid} ended {job.status}: {job_message(job.message)}")
                continue
            alive.append(claim)
            pending += job.status == "PENDING"
            where = executor.ray_job(sid, job.node_ip, self.dashboard)
            if where != run["executor"]:
                queue.record_process(self.engine, run["id"], claim, executor=where)
            self._police_cancel(run, sid, job, now)
        if beat:
            queue.heartbeat_claims(self.engine, alive)
        current = {r["worker_id"][len(RAY_CLAIM_PREFIX):] for r in claims}
        for sid in list(self._cancel_seen):
            if sid not in current:
                self._cancel_seen.pop(sid)
                self._stopped.discard(sid)
        return current, pending

    def _lost(self, run: dict[str, Any], sid: str, reason: str) -> None:
        outcome = queue.finish_attempt(self.engine, run["id"], run["worker_id"], run["attempts"], None, reason=reason)
        self.log(str(outcome))

    def _police_cancel(self, run: dict[str, Any], sid: str, job: JobView, now: float) -> None:
        if not run["cancel_requested"] or sid in self._stopped:
            return
        first = self._cancel_seen.setdefault(sid, now)
        if job.status == "PENDING" or now - first >= self.cancel_grace_s:
            why = "it had not started" if job.status == "PENDING" else \
                f"it did not stop within {self.cancel_grace_s:g} s of the cancel request"
            self.log(f"run {run['id']}: stopping Ray job {sid}: {why}")
            self.jobs.stop(sid)
            self._stopped.add(sid)

    def _stop_orphans(self) -> None:
        """Stop this database's pending jobs whose attempt was given up: requeued as stale while no
        dispatcher watched them. Started, such a job would only find its claim gone and exit; stopping
        it frees its place now. (Running jobs are left alone: one whose run has just recorded its
        result is merely exiting, and one whose claim was taken sees that itself and stops.)"""
        for sid in self.jobs.pending():
            m = SUBMISSION_ID.fullmatch(sid)
            run = get_run(self.engine, int(m["run"])) if m else None
            if run is None or submission_id(self.url, {**run, "attempts": int(m["attempt"])}) != sid:
                continue  # another database's job (or a run since deleted: not ours to judge)
            if run["status"] != RUNNING or run["worker_id"] != RAY_CLAIM_PREFIX + sid:
                self.log(f"run {run['id']}: stopping Ray job {sid}: its attempt was given up "
                         f"(the run is {run['status']} now)")
                self.jobs.stop(sid)

    # ---------------------------------------------------------------- submit
    def _fill(self, pending: int) -> int:
        """Submit queued runs while fewer than --max-pending jobs wait in Ray: the rest stay queued
        in the database, where any worker (or a later dispatcher) may still take them."""
        while pending < self.max_pending and queue.has_queued(self.engine):
            run = queue.claim_next(self.engine, self.id, "ray")
            if run is None:
                break
            sid = submission_id(self.url, run)
            claim = RAY_CLAIM_PREFIX + sid
            if not queue.hand_over_claim(self.engine, run["id"], self.id, claim):
                continue
            if self._submit({**run, "worker_id": claim}, sid):
                pending += 1
        return pending

    def _submit(self, run: dict[str, Any], sid: str) -> bool:
        """Submit the job of `run`'s current claim; False when the attempt could not be submitted."""
        run_id, claim = run["id"], run["worker_id"]
        cfg = RunConfig.from_dict(run["config"])
        per_node = self._gpus_per_node()
        gpus = gpus_for(cfg, any(per_node))
        if gpus > max(per_node, default=0):
            error = (f"the run needs {gpus} GPU(s) on one machine; the Ray cluster's largest node has "
                     f"{max(per_node, default=0)}")
            self.log(f"run {run_id}: {error}")
            queue.fail_claim(self.engine, run_id, claim, error)
            return False
        env = {**job_env(self.url, claim, gpus, self.cpus_per_run, processes=cfg.devices),
               DB_ID_VAR: self.database_id}
        try:
            new = self.jobs.submit(sid, job_entrypoint(run_id, run["attempts"], cfg), num_gpus=gpus, num_cpus=self.cpus_per_run, env=env)
        except RuntimeError as e:  # Ray answered, and refused (a bad runtime environment, ...)
            self._lost(run, sid, f"Ray refused job {sid}: {str(e).strip().splitlines()[0]}")
            return False
        queue.record_process(self.engine, run_id, claim, executor=executor.ray_job(sid, None, self.dashboard))
        self._watched[sid] = (run_id, run["attempts"])
        self.log(f"run {run_id} (attempt {run['attempts']}) {'submitted as' if new else 'already in Ray as'} "
                 f"job {sid}: {gpus} GPU(s), {self.cpus_per_run} CPU(s)")
        return True

    def _gpus_per_node(self) -> list[int]:
        now = time.monotonic()
        if self._gpus is None or now - self._gpus_at >= CLUSTER_INFO_EVERY_S:
            self._gpus, self._gpus_at = self.jobs.gpus_per_node(), now
        return self._gpus

    # ---------------------------------------------------------------- logs
    def _collect_logs(self, current: set[str]) -> None:
        """Append each ended job's output to its run's log.txt (the run page shows it), once.

        Jobs whose run left `running` (it recorded its result) or was requeued; a job can take a
        moment to be marked ended after its run is, so it is looked at again next pass.
        """
        for sid, (run_id, attempt) in list(self._watched.items()):
            if sid in current:
                continue
            job = self.jobs.info(sid)
            if job is not None and job.status not in TERMINAL:
                continue
            self._watched.pop(sid)
            if job is None:
                continue
            path = run_dir(run_id, self.database_id) / "log.txt"
            try:
                text = self.jobs.logs(sid)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a") as f:
                    f.write(f"\n=== attempt {attempt} of run {run_id}: Ray job {sid} on node {job.node_ip or '?'}, "
                            f"ended {job.status} ===\n{text}")
                update_run(self.engine, run_id, log_path=str(path))
            except (OSError, RuntimeError) as e:  # a full disk or a lost log must not stop dispatching
                self.log(f"run {run_id}: could not save the log of Ray job {sid}: {e}")

    # ---------------------------------------------------------------- start-up
    def _refuse_second_dispatcher(self) -> None:
        for w in queue.live_workers(self.engine):  # each alive by its own --stale-after
            if not queue.is_dispatcher(w):
                continue
            if w["hostname"] == self.hostname and not _pid_alive(w["pid"]):
                continue  # killed without saying so; this one takes over
            raise DispatchError(f"another Ray dispatcher ({w['id']}) is alive on this database; run one per "
                                "database (stop it first, or wait until its heartbeat is older than "
                                f"{max(15.0, 3 * self.heartbeat_s):g} s)")

    def _install_signal_handlers(self) -> Callable[[], None]:
        return on_stop_signals(self.request_stop)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------- CLI
def add_dispatch_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dispatch", help="run queued runs as Ray jobs on a Ray cluster",
        description="Submit each queued run as a Ray job (Ray's Job Submission API) and keep the run database "
                    "in step with the jobs. Ctrl-C stops the dispatcher only; the jobs keep running.")
    p.add_argument("--ray", required=True, metavar="ADDRESS",
                   help="the Ray head's dashboard address, e.g. http://127.0.0.1:8265")
    p.add_argument("--dashboard", default=None, metavar="URL",
                   help="the Ray dashboard as browsers reach it, for links (default: --ray when it is http)")
    p.add_argument("--cpus-per-run", type=int, default=1, metavar="N",
                   help="CPUs each job requests from Ray, also its threads (split between the processes of a "
                        "multi-device run; default 1)")
    p.add_argument("--max-pending", type=int, default=2, metavar="N",
                   help="submit while fewer than N jobs wait in Ray for resources (default 2)")
    p.add_argument("--cancel-grace", type=float, default=CANCEL_GRACE_S, metavar="S",
                   help=f"stop a cancelled run's job through Ray after S seconds (default {CANCEL_GRACE_S:g})")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_S, metavar="S",
                   help=f"requeue a running run whose heartbeat is older than S seconds (default "
                        f"{STALE_AFTER_S:g}; at least a few heartbeats of {HEARTBEAT_S:g} s)")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between passes (default 1)")
    p.add_argument("--exit-when-idle", action="store_true", help="exit once nothing is queued or running")
    p.set_defaults(func=cmd_dispatch)


def cmd_dispatch(args: argparse.Namespace) -> int:
    dashboard = args.dashboard or (args.ray if args.ray.startswith(("http://", "https://")) else None)
    try:
        jobs = RayJobs(args.ray)
        jobs.gpus_per_node()  # fail now, clearly, rather than on the first queued run
    except Exception as e:  # noqa: BLE001 — connection refused, bad token, bad address: all end here
        print(f"error: cannot reach the Ray cluster at {args.ray}: {str(e).strip().splitlines()[0]}",
              file=sys.stderr)
        return 2
    try:
        check_stale_after(args.stale_after)
        dispatcher = Dispatcher(args.db, jobs, dashboard=dashboard, cpus_per_run=args.cpus_per_run,
                                max_pending=args.max_pending, poll_s=args.poll, cancel_grace_s=args.cancel_grace,
                                stale_after_s=args.stale_after, exit_when_idle=args.exit_when_idle)
        return dispatcher.run()
    except (DispatchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
