"""The worker: claims queued runs and runs each one in its own process, one per slot.

    python -m engine worker [--slots N] [--devices cuda:0,cuda:1|cpu] [--db URL] [--stale-after S]
    python -m engine worker --detach     start one in the background (what `./lab.sh serve` does)
    python -m engine worker --stop       ask this machine's workers to finish their runs and exit

A run with `devices` > 1 takes a free slot on each of that many different GPUs (or one CPU slot,
whose cores its processes share) and is started by torchrun, one process per device.

Why a process per run: a crash, a segfault or an out-of-memory kill ends that run only, and the
GPU memory it held is returned to the driver when the process exits. The worker itself imports
neither torch nor CUDA, so it is small, starts at once, and never holds GPU memory.

One loop, one thread (signals, child processes and PR_SET_PDEATHSIG all behave best that way):
every `poll` seconds it reaps finished children, heartbeats (itself and its live runs), recovers
stale runs of any worker, and fills free slots.

Life and death of children:
- Each child gets its own session (start_new_session): Ctrl-C in the worker's terminal does not
  reach the runs, and the worker can kill a run together with anything it spawned (killpg).
- Each child is killed by the kernel if the worker dies (PR_SET_PDEATHSIG, Linux): a worker that
  is `kill -9`ed does not leave runs behind that nobody accounts for; their heartbeats stop and
  any worker (this one restarted, or another) requeues them after `--stale-after` seconds.
- SIGTERM or SIGINT once: drain — claim nothing more, let the running runs finish, then exit.
  A second SIGTERM/SIGINT: stop now — kill the runs and requeue them at once (no retry charged,
  since nothing is wrong with them); they resume from their last checkpoint on the next worker.
  Draining by default because a run can be hours from its next checkpoint; a service manager
  that wants it faster sends the signal twice (or SIGKILL: then the stale timeout recovers them).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from db import executor, queue
from db.config import run_dir
from db.heartbeat import HEARTBEAT_S, STALE_AFTER_S, check_stale_after
from db.identity import ENV_VAR as DB_ID_VAR
from db.identity import DatabaseChanged, identify, verify
from db.queue import CLAIM_ENV, LOCAL_IDLE_EXIT_S, Outcome
from db.session import default_url, make_engine
from db.status import utcnow
from engine.jobs.launch import execute_command, process_env, with_processes

# A run asked to cancel stops at its next step or evaluation batch on its own; this is the backstop for one
# that does not (stuck in a long evaluation, hung): after this long it is killed and ends cancelled.
CANCEL_GRACE_S = 60.0

# (run id, attempt) -> the command for one process (torchrun wraps it for several)
CommandFn = Callable[[int, int], list[str]]


# ----------------------------------------------------------------------------------- slots/devices
@dataclass
class Job:
    run_id: int
    attempt: int
    proc: subprocess.Popen
    log_file: IO[bytes]
    kill_reason: str | None = None  # set when the worker killed it, so the outcome says why
    consume_retry: bool = True
    linger_since: float | None = None  # when it was first seen finished or asked to cancel


@dataclass
class Slot:
    index: int
    device: str  # "cpu" or "cuda:N" (N in the worker's own view: the N-th visible GPU)
    env: dict[str, str] = field(default_factory=dict)
    job: Job | None = None  # a run with devices > 1 on GPUs holds one slot on each of its GPUs


def slots_for(devices: int, free: list[Slot]) -> list[Slot] | None:
    """The free slots a run with `devices` processes takes, or None when they are not free now.

    On GPUs: one free slot on each of `devices` different GPUs (two processes of a run must not
    share one). A CPU slot takes a run of any size: its processes share the slot's cores.
    """
    if devices == 1:
        return free[:1] or None
    first_per_gpu: dict[str, Slot] = {}
    for s in free:
        if s.device != "cpu":
            first_per_gpu.setdefault(s.device, s)
    if len(first_per_gpu) >= devices:
        return list(first_per_gpu.values())[:devices]
    return next(([s] for s in free if s.device == "cpu"), None)


def max_devices(free: list[Slot]) -> int | None:
    """The largest run (in devices) that fits the free slots now; None: any (a CPU slot is free)."""
    if any(s.device == "cpu" for s in free):
        return None
    return len({s.device for s in free})


def launch_env(slots: list[Slot], processes: int) -> dict[str, str]:
    """The environment of a run's processes: the GPUs of its slots, their cores split between them."""
    gpus = [s.env["CUDA_VISIBLE_DEVICES"] for s in slots]
    threads = str(max(1, sum(int(s.env["SIMCLR_NUM_THREADS"]) for s in slots) // processes))
    # OMP_NUM_THREADS too: torchrun would otherwise set it to 1 (and say so in the log).
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus) if slots[0].device != "cpu" else "",
            "SIMCLR_NUM_THREADS": threads, **({"OMP_NUM_THREADS": threads} if processes > 1 else {})}


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs this worker may use, as CUDA_VISIBLE_DEVICES entries — without initialising CUDA.

    CUDA_VISIBLE_DEVICES, when set, is the answer (CUDA itself stops at the first invalid entry,
    so "-1" means none). Otherwise `nvidia-smi -L`, by UUID: a UUID names the same GPU whatever
    CUDA_DEVICE_ORDER is, while plain indices may be ordered differently by CUDA and nvidia-smi.
    """
    environ = os.environ if environ is None else environ
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids = []
        for entry in (e.strip() for e in cvd.split(",")):
            if not entry or entry.startswith("-"):
                break
            ids.append(entry)
        return ids
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    gpus = []
    for line in out.stdout.splitlines():
        if line.startswith("GPU "):  # MIG instances are indented lines below their GPU: not ours to split
            uuid = line.rsplit("UUID:", 1)[-1].strip(" )") if "UUID:" in line else str(len(gpus))
            gpus.append(uuid)
    return gpus


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / container CPU sets, unlike os.cpu_count()
    except AttributeError:
        return os.cpu_count() or 1


def plan_slots(devices: str | None, slots: int | None, gpus: list[str], cores: int | None = None,
               threads: int | None = None) -> list[Slot]:
    """Slots over devices, round-robin: default one per visible GPU, else one CPU slot.

    `--devices cpu --slots 4` gives four CPU runs at once with the cores split between them;
    `--devices cuda:0,cuda:1 --slots 4` two runs per GPU.
    """
    if devices:
        labels = []
        for d in (x.strip() for x in devices.split(",")):
            if d == "cuda":
                labels += [f"cuda:{i}" for i in range(len(gpus))]
            elif d == "cpu" or (d.startswith("cuda:") and d[5:].isdigit()):
                labels.append(d)
            elif d:
                raise ValueError(f"--devices: {d!r} is not cpu, cuda or cuda:N")
        for d in labels:
            if d.startswith("cuda:") and int(d[5:]) >= len(gpus):
                seen = ", ".join(f"cuda:{i}" for i in range(len(gpus))) or "none"
                raise ValueError(f"--devices: {d} is not visible to this worker (visible GPUs: {seen})")
        if not labels:
            raise ValueError("--devices: no device given (and 'cuda' found no GPU)")
    else:
        labels = [f"cuda:{i}" for i in range(len(gpus))] or ["cpu"]
    n = slots if slots is not None else len(labels)
    if n < 1:
        raise ValueError("--slots must be at least 1")
    # Threads: an explicit SIMCLR_NUM_THREADS wins; else the cores split evenly, so N CPU runs at
    # once do not each start `cores` threads and thrash.
    per_run = threads or max(1, (cores or cpu_cores()) // n)
    plan = []
    for i in range(n):
        label = labels[i % len(labels)]
        # A CPU slot hides the GPUs: a run with device=auto must not wander onto a GPU another slot owns.
        cvd = gpus[int(label[5:])] if label.startswith("cuda:") else ""
        plan.append(Slot(i, label, {"CUDA_VISIBLE_DEVICES": cvd, "SIMCLR_NUM_THREADS": str(per_run)}))
    return plan


def device_problem(wanted: str, slot: str) -> str | None:
    """Why a run whose config asks for `wanted` cannot run in a slot on `slot`, or None if it can.

    A GPU slot shows its run exactly one GPU, as cuda:0 (CUDA_VISIBLE_DEVICES), so cuda:N > 0
    cannot run in any slot; a CPU slot hides every GPU.
    """
    if wanted in ("auto", "cpu"):
        return None
    if wanted.startswith("cuda"):
        if not slot.startswith("cuda"):
            return f"the run asks for device {wanted} and this slot has no GPU (slot device {slot})"
        if wanted not in ("cuda", "cuda:0"):
            return (f"the run asks for device {wanted}, but a worker shows each run one GPU, as cuda:0; "
                    "use device cuda (or auto) and pick GPUs with the worker's --devices")
        return None
    return f"the run asks for device {wanted}, which this worker does not offer (slot device {slot})"


# ------------------------------------------------------------------------------- child processes
# How much nicer than the worker its run processes start (`--nice`): with N > 0, on a machine whose
# cores the runs fill, the dashboard and the shell get a core first. Not the default: measured with
# bench/twenty_tabs.py under 4 CPU runs and 20 tabs (BENCHMARKS.md), +10 made no difference the
# bench could tell from run-to-run noise (new points within 1.0 s at +10, 1.3 s at 0) once the
# dashboard's own cost was fixed, and a trick that measures nothing stays off.
RUN_NICE = 0


def check_nice(value: int) -> int:
    if not 0 <= value <= 19:
        raise ValueError(f"--nice must be 0 (as the worker) to 19 (only idle cores), got {value}")
    return value


def _child_preexec_fn(nice: int) -> Callable[[], None] | None:
    """A preexec_fn that lowers the child's priority by `nice` and asks Linux to SIGKILL it when
    the worker dies (PR_SET_PDEATHSIG)."""
    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            pass
    if libc is None and not nice:
        return None
    parent = os.getpid()

    def preexec() -> None:
        if nice:
            try:
                os.nice(nice)
            except OSError:  # a sandbox that forbids it: run at the worker's priority rather than not at all
                pass
        if libc is not None:
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the worker died before prctl took effect
                os._exit(1)

    return preexec


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the child leads its own session: take its helpers too
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------------------ worker
class Worker:
    def __init__(self, db_url: str | None = None, *, slots: list[Slot], stale_after_s: float = STALE_AFTER_S,
                 poll_s: float = 1.0, heartbeat_s: float = HEARTBEAT_S, cancel_grace_s: float = CANCEL_GRACE_S,
                 exit_when_idle: bool = False, idle_exit_s: float | None = None, nice: int = RUN_NICE,
                 command: CommandFn = execute_command, log: Callable[[str], None] | None = None):
        check_stale_after(stale_after_s)  # before anything starts: a bad limit must not touch the queue
        check_nice(nice)
        self.url = db_url or default_url()
        self.engine = make_engine(self.url)  # refuses an outdated schema with the `db upgrade` hint
        self.identity = identify(self.engine)  # checked every heartbeat: a swapped database stops the worker
        self.database_changed: str | None = None
        self._unsuitable: set[int] = set()  # runs claimed and given back: they ask for a device we lack
        self.slots = slots
        self.stale_after_s, self.poll_s, self.heartbeat_s = stale_after_s, poll_s, heartbeat_s
        self.cancel_grace_s, self.exit_when_idle, self.command = cancel_grace_s, exit_when_idle, command
        self.idle_exit_s = idle_exit_s  # exit after this long with nothing to do (a background worker)
        self._idle_since: float | None = None
        self.hostname = socket.gethostname()
        self.id = f"{self.hostname}:{os.getpid()}:{int(time.time())}"
        self._log = log or (lambda m: print(m, flush=True))
        self.draining = False  # stop claiming; exit when the running runs are done
        self.stop_now = False  # kill the runs, requeue them, exit
        self._reported: str | None = None
        self._last_beat = self._last_recover = float("-inf")
        self._child_preexec = _child_preexec_fn(nice)

    # ---------------------------------------------------------------- public
    def run(self) -> int:
        queue.register_worker(self.engine, self.id, hostname=self.hostname, pid=os.getpid(), slots=len(self.slots),
                              devices=",".join(s.device for s in self.slots), stale_after_s=self.stale_after_s)
        self.log(f"worker {self.id}: {len(self.slots)} slot(s) on {', '.join(s.device for s in self.slots)}, "
                 f"database {self.engine.url.render_as_string(hide_password=True)}")
        restore = self._install_signal_handlers()
        try:
            while True:
                self._tick()
                if self.database_changed:
                    return self._abandon()
                try:
                    if self._finished():
                        break
                except DBAPIError as e:
                    self.log(f"database error, retrying: {str(e).splitlines()[0]}")
                time.sleep(self.poll_s)
        finally:
            if not self.database_changed:  # else nothing may be written to a database that is not ours
                self._kill_all("worker is exiting", consume_retry=False)
                self._reap_until_empty()
            restore()
            if not self.database_changed:
                mark_stopped(self.engine, self.id, "worker", self.log)
                self.log(f"worker {self.id} stopped")
        return 0

    def request_stop(self) -> None:
        """First call: drain. Second call: stop now (kill and requeue the runs).

        Called from a signal handler: it only sets flags (printing from a handler can hit a
        half-done print in the main loop); the loop reports the change.
        """
        if not self.draining:
            self.draining = True
        else:
            self.stop_now = True

    @property
    def jobs(self) -> list[Job]:
        return list({id(s.job): s.job for s in self.slots if s.job is not None}.values())

    def log(self, message: str) -> None:
        self._log(f"{utcnow():%Y-%m-%d %H:%M:%S} {message}")

    # ---------------------------------------------------------------- loop
    def _abandon(self) -> int:
        """The database changed under us: stop the runs without writing a thing, and exit."""
        self.log(f"error: {self.database_changed}. Stopping this worker and its runs without writing to "
                 "the database any more; start a worker again to serve the database now there.")
        for job in self.jobs:
            _kill_group(job.proc.pid)
        for job in self.jobs:
            job.proc.wait()
            job.log_file.close()
        for slot in self.slots:
            slot.job = None
        return 3

    def _tick(self) -> None:
        try:
            self._reap()
            now = time.monotonic()
            if now - self._last_beat >= self.heartbeat_s:
                try:
                    verify(self.engine, self.identity)
                except DatabaseChanged as e:
                    self.database_changed = str(e)
                    return
                queue.heartbeat(self.engine, self.id, [j.run_id for j in self.jobs if j.proc.poll() is None])
                self._police_jobs(now)
                self._last_beat = now
            if now - self._last_recover >= self._recover_every():
                for outcome in queue.recover_stale(self.engine, self.stale_after_s):
                    self.log(str(outcome))
                self._last_recover = now
            self._report_stop_state()
            if self.stop_now:
                self._kill_all(f"worker {self.id} was stopped", consume_retry=False)
            elif not self.draining:
                self._fill_slots()
        except DBAPIError as e:
            # The database restarting or a network blip must not take the worker (and its runs) down.
            self.log(f"database error, retrying: {str(e).splitlines()[0]}")

    def _report_stop_state(self) -> None:
        state = "stopping" if self.stop_now else "draining" if self.draining else None
        if state and state != self._reported:
            self._reported = state
            if state == "draining":
                self.log(f"draining: claiming no new runs; waiting for {len(self.jobs)} running run(s). "
                         "Send SIGTERM or press Ctrl-C again to stop them now and requeue them.")
            else:
                self.log(f"stopping now: killing {len(self.jobs)} run(s) and requeueing them")

    def _recover_every(self) -> float:
        return max(1.0, min(10.0, self.stale_after_s / 4))

    def _finished(self) -> bool:
        if self.jobs:
            self._idle_since = None
            return False
        if self.draining or self.stop_now:
            return True
        if self.idle_exit_s is not None:
            # Runs it gave back (a device it lacks) are not work for it: they must not keep it up.
            if queue.has_queued(self.engine, skip=self._unsuitable):
                self._idle_since = None
            else:
                now = time.monotonic()
                self._idle_since = self._idle_since if self._idle_since is not None else now
                if now - self._idle_since >= self.idle_exit_s:
                    self.log(f"idle for {self.idle_exit_s:g} s: exiting (the dashboard or "
                             "`python -m engine worker --detach` starts another)")
                    return True
        # Idle means nothing queued and nothing running anywhere: a run another worker loses can
        # still come back to the queue, and a worker meant to drain it should be there to take it.
        return (self.exit_when_idle and not queue.has_queued(self.engine, skip=self._unsuitable)
                and queue.running_count(self.engine) == 0)

    def _fill_slots(self) -> None:
        while True:
            free = [s for s in self.slots if s.job is None]
            if not free or not queue.has_queued(self.engine, skip=self._unsuitable):
                return
            run = queue.claim_next(self.engine, self.id, free[0].device, max_devices=max_devices(free),
                                   skip=self._unsuitable)
            if run is None:
                return
            devices = int(run["config"].get("devices", 1))
            slots = slots_for(devices, free)
            assert slots is not None, "claim_next took a run larger than max_devices"
            problem = device_problem(str(run["config"].get("device", "auto")), slots[0].device)
            if problem:
                self._unsuitable.add(run["id"])
                reason = f"worker {self.id} cannot run it: {problem}; it waits for a worker that can"
                self.log(f"run {run['id']}: {reason}")
                queue.release_claim(self.engine, run["id"], self.id, run["attempts"], reason)
                continue  # and try the next queued run
            self._spawn(slots, run, devices)

    def _spawn(self, slots: list[Slot], run: dict, devices: int = 1) -> None:
        run_id, attempt = run["id"], run["attempts"]
        log_path = run_dir(run_id, self.identity.database_id) / "log.txt"
        # "cuda:0", "cuda:0,cuda:1" (one process per GPU), or "cpu x2" (processes sharing a CPU slot)
        label = ",".join(s.device for s in slots) + (f" x{devices}" if devices > len(slots) else "")
        env = {**os.environ, **launch_env(slots, devices), **process_env(self.url), CLAIM_ENV: self.id,
               DB_ID_VAR: self.identity.database_id}
        log_file = None
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(log_path, "ab")  # append: the log keeps every attempt, each under its header
            log_file.write(f"\n=== attempt {attempt} of run {run_id} on worker {self.id}, device {label}, "
                           f"{utcnow():%Y-%m-%d %H:%M:%S} UTC ===\n".encode())
            log_file.flush()
            command = with_processes(self.command(run_id, attempt), devices)
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=self._child_preexec)
        except OSError as e:  # full disk, unwritable runs folder, missing interpreter: this run's problem only
            if log_file is not None:
                log_file.close()
            self.log(str(queue.finish_attempt(self.engine, run_id, self.id, attempt, None,
                                              reason=f"could not start the run process: {e}")))
            return
        job = Job(run_id, attempt, proc, log_file)
        for slot in slots:
            slot.job = job
        self.log(f"run {run_id} (attempt {attempt}) started on {label}, pid {proc.pid}, log {log_path}")
        where = executor.local_worker(self.hostname, os.getpid(), [s.index for s in slots], label)
        queue.record_process(self.engine, run_id, self.id, pid=proc.pid, log_path=str(log_path), executor=where,
                             **({"device": label} if label != slots[0].device else {}))

    def _reap(self) -> None:
        for job in self.jobs:
            if job.proc.poll() is None:
                continue
            # poll() has reaped the child (no zombie); the return code stays on the Popen, so if the
            # database is unreachable right now the next tick retries the bookkeeping.
            outcome = queue.finish_attempt(self.engine, job.run_id, self.id, job.attempt, job.proc.returncode,
                                           reason=job.kill_reason, consume_retry=job.consume_retry)
            self._note(job, outcome)
            job.log_file.close()
            for slot in self.slots:
                if slot.job is job:
                    slot.job = None

    def _note(self, job: Job, outcome: Outcome) -> None:
        rc = job.proc.returncode
        self.log(f"run {job.run_id} (attempt {job.attempt}) process exited ({rc}): {outcome.message}")
        if outcome.status == "queued" or job.kill_reason:
            try:
                job.log_file.write(f"=== [worker] {outcome.message}\n".encode())
                job.log_file.flush()
            except OSError:
                pass

    def _police_jobs(self, now: float) -> None:
        """Kill children whose run was taken from them, or that linger past a grace period."""
        live = {j.run_id: j.attempt for j in self.jobs if j.proc.poll() is None}
        states = queue.claim_states(self.engine, live, self.id)
        cancelling = queue.cancel_requested(self.engine, list(live))
        for job in self.jobs:
            state = states.get(job.run_id)
            if state == "lost":
                # Requeued as stale by some worker (we stalled?) or deleted: two processes must never
                # train the same run, so this one goes at once.
                self._kill(job, "run was taken over while this process still ran")
            elif state == "finished" or (state == "ours" and job.run_id in cancelling):
                # Result recorded but the process hangs in teardown, or a cancel it does not act on:
                # free the slot after a grace period. Its recorded status (or cancelled) stands.
                job.linger_since = job.linger_since or now
                if now - job.linger_since >= self.cancel_grace_s:
                    what = "did not exit after recording its result" if state == "finished" else \
                        "did not stop after a cancel request"
                    self._kill(job, f"killed: it {what} within {self.cancel_grace_s:g} s")

    def _kill(self, job: Job, reason: str, *, consume_retry: bool = True) -> None:
        if job.kill_reason is None:
            job.kill_reason, job.consume_retry = reason, consume_retry
            self.log(f"run {job.run_id}: {reason}; killing pid {job.proc.pid}")
        _kill_group(job.proc.pid)

    def _kill_all(self, reason: str, *, consume_retry: bool) -> None:
        for job in self.jobs:
            if job.proc.poll() is None:
                self._kill(job, reason, consume_retry=consume_retry)

    def _reap_until_empty(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.jobs and time.monotonic() < deadline:
            for job in self.jobs:
                try:
                    job.proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            try:
                self._reap()
            except DBAPIError as e:
                self.log(f"database error while reaping, retrying: {str(e).splitlines()[0]}")
                time.sleep(1)

    def _install_signal_handlers(self) -> Callable[[], None]:
        return on_stop_signals(self.request_stop)


def mark_stopped(engine: Engine, worker_id: str, what: str, log: Callable[[str], None]) -> None:
    """Record that this worker (or dispatcher) has stopped, on the way out: a database error then is
    logged, not raised, so it cannot hide the reason the loop ended."""
    try:
        queue.worker_stopped(engine, worker_id)
    except DBAPIError as e:
        log(f"could not mark the {what} stopped: {e}")


def on_stop_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` on SIGTERM and SIGINT (main thread only); returns what restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, lambda _signum, _frame: callback())

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


# --------------------------------------------------------------------------------------------- CLI
def add_worker_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=int, default=None,
                        help="runs at once (default: one per device in --devices)")
    parser.add_argument("--devices", default=None,
                        help="comma-separated cpu, cuda or cuda:N, slots assigned round-robin "
                             "(default: every visible GPU, else cpu)")
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER_S, metavar="S",
                        help="requeue a running run (any worker's) whose heartbeat is older than S seconds "
                             f"(default {STALE_AFTER_S:g}; at least a few heartbeats of {HEARTBEAT_S:g} s)")
    parser.add_argument("--poll", type=float, default=1.0, metavar="S",
                        help="seconds between looks at the queue (default 1)")
    parser.add_argument("--nice", type=int, default=RUN_NICE, metavar="N",
                        help=f"run processes start N steps nicer than the worker, so that the dashboard and shell "
                             f"get a core first while runs fill the cores (default {RUN_NICE}; 0 to 19)")
    parser.add_argument("--exit-when-idle", "--once", dest="exit_when_idle", action="store_true",
                        help="exit once nothing is queued or running (scripts and tests)")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds with nothing queued and no run of its own "
                             f"(default: never; with --detach {LOCAL_IDLE_EXIT_S:g})")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--detach", action="store_true",
                      help="start a worker in the background (own session, log in runs/<database id>/"
                           "worker.log) unless one is already alive for this database, print its pid and how to stop "
                           "it, and return")
    what.add_argument("--stop", action="store_true",
                      help="ask the live workers of this database on this machine to stop: they claim nothing "
                           "more and exit when their running runs finish (with --now: at once, requeueing them)")
    parser.add_argument("--now", action="store_true", help="with --stop: stop the runs now and requeue them")


def worker_from_args(args: argparse.Namespace, *, command: CommandFn = execute_command,
                     log: Callable[[str], None] | None = None) -> Worker:
    threads = int(os.environ["SIMCLR_NUM_THREADS"]) if os.environ.get("SIMCLR_NUM_THREADS") else None
    wants_gpu = args.devices is None or "cuda" in args.devices
    slots = plan_slots(args.devices, args.slots, visible_gpus() if wants_gpu else [], threads=threads)
    return Worker(args.db, slots=slots, stale_after_s=args.stale_after, poll_s=args.poll,
                  exit_when_idle=args.exit_when_idle, idle_exit_s=args.idle_exit, nice=args.nice, command=command,
                  log=log)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.now and not args.stop:
        print("error: --now goes with --stop", file=sys.stderr)
        return 2
    if args.stop:
        from engine.jobs.background import stop_local_workers

        return stop_local_workers(args.db, now=args.now)
    try:
        worker = worker_from_args(args)  # checks the flags before anything is detached
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.detach:
        from engine.jobs.background import detach

        worker.engine.dispose()
        return detach(args, db_url=worker.url)
    return worker.run()

