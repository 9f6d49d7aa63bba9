"""A throw-away Ray head on this machine, for the tests and benchmarks (not for real clusters).

127.0.0.1 only: Ray puts a node on its LAN address unless told it is a single-machine cluster
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes it use the loopback address on Linux too). Usage
statistics off. Token authentication on, with a fresh token: RAY_AUTH_MODE=token and
RAY_AUTH_TOKEN go to the head and must be in the environment of every client (`env`). Optional
fake GPUs (`--num-gpus N` on a machine without any): Ray schedules and assigns them
(CUDA_VISIBLE_DEVICES) as if they were real.

The head is a `ray start --block` process in a session of its own; `stop()` (SIGTERM, then
SIGKILL of its process group) takes down exactly the processes it started, where `ray stop`
would stop every Ray process of this user on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class RayStartError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRayHead:
    address: str  # the job submission / dashboard address, http://127.0.0.1:PORT
    env: dict[str, str]  # what a client needs in its environment (the token)
    log: Path
    proc: subprocess.Popen
    temp: Path

    @classmethod
    def start(cls, *, num_gpus: int = 0, num_cpus: int = 2, timeout_s: float = 300.0) -> "LocalRayHead":
        ray_bin = Path(sys.executable).with_name("ray")
        if not ray_bin.exists():
            raise RayStartError(f"no `ray` next to {sys.executable}: install requirements.txt (ray[default])")
        # Short: Ray's unix socket paths live under it, and those are limited to ~107 characters.
        temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
        dash = _free_port()
        head_env = {**os.environ, **env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    # Jobs run `python -m engine ...`: this venv's python, as after `source .venv/bin/activate`.
                    "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        cmd = [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(_free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
               "--ray-client-server-port", str(_free_port()), "--num-gpus", str(num_gpus), "--num-cpus", str(num_cpus),
               "--object-store-memory", str(100 * 1024**2), "--disable-usage-stats", "--temp-dir", str(temp)]
        log = temp / "head.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=head_env, start_new_session=True)
        head = cls(f"http://127.0.0.1:{dash}", env, log, proc, temp)
        try:
            head._wait_ready(num_gpus, timeout_s)
        except BaseException:
            head.stop()
            raise
        return head

    def _wait_ready(self, num_gpus: int, timeout_s: float) -> None:
        from engine.jobs.ray_dispatch import RayJobs

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        deadline, last = time.monotonic() + timeout_s, None
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RayStartError(f"`ray start --head` exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if sum(RayJobs(self.address).gpus_per_node()) == num_gpus and self._jobs_run(deadline):
                        return
                except Exception as e:  # noqa: BLE001 — not up yet
                    last = e
                time.sleep(0.5)
            raise RayStartError(f"the Ray head did not answer within {timeout_s:g} s ({last}):\n{self.log_tail()}")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _jobs_run(self, deadline: float) -> bool:
        """True once a trivial job has run to the end. The cluster answers before its job agent is up
        (a submit then fails with "No available agent to submit job"; on a loaded machine for a minute
        or more), so readiness is a job that ran, not a cluster that answers."""
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(self.address)
        job = client.submit_job(entrypoint="true")
        while time.monotonic() < deadline:
            status = client.get_job_status(job)
            if status.is_terminal():
                return status == JobStatus.SUCCEEDED
            time.sleep(0.5)
        return False

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its session still there
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        shutil.rmtree(self.temp, ignore_errors=True)
