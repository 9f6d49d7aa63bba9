"""A local Ray head for the dispatcher tests, started once per test session and stopped at its end.

127.0.0.1 only (Ray puts a node on its LAN address unless told it is a single-machine cluster:
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes it use the loopback address on Linux too), usage
statistics off, token authentication on with a fresh token (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN,
for the head and, through this process's environment, for every client and dispatcher the tests
start), and 2 fake GPUs (`--num-gpus 2`), so GPU requests and CUDA_VISIBLE_DEVICES assignment are
real on a machine without any. The head is a `ray start --block` process in a session of its own;
stopping it (SIGTERM, then SIGKILL of its process group) takes down exactly the processes it
started, where `ray stop` would stop every Ray process of this user on the machine.

Without Ray, the tests that need it skip, except in CI (CI=true), where they fail.
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
from typing import Iterator

import pytest

from tests.conftest import IN_CI

FAKE_GPUS = 2
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class RayHead:
    address: str  # the dashboard / job submission address, http://127.0.0.1:PORT
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"the Ray tests cannot run: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        _unavailable(f"no `ray` next to {sys.executable}: install requirements.txt (ray[default])")
    # Short: Ray's unix socket paths live under it, and those are limited to ~107 characters.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    token = secrets.token_hex(16)
    ray_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in ray_env}
    os.environ.update(ray_env)  # clients in this process and every process it starts
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           # Jobs run `python -m engine ...`: this venv's python, as after `source .venv/bin/activate`.
           "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = temp / "head.log"
    cmd = [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--ray-client-server-port", str(_free_port()),
           "--num-gpus", str(FAKE_GPUS), "--num-cpus", "4", "--object-store-memory", str(100 * 1024**2),
           "--disable-usage-stats", "--temp-dir", str(temp)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    head = RayHead(f"http://127.0.0.1:{dash}", log)
    try:
        _wait_ready(head, proc)
        yield head
    finally:
        _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait_ready(head: RayHead, proc: subprocess.Popen) -> None:
    from engine.jobs.ray_dispatch import RayJobs

    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _stop(proc)
            _unavailable(f"`ray start --head` exited with {proc.returncode}:\n{head.log.read_text()[-3000:]}")
        try:
            if sum(RayJobs(head.address).gpus_per_node()) == FAKE_GPUS:
                return
        except Exception as e:  # noqa: BLE001 — not up yet
            last = e
        time.sleep(0.5)
    _stop(proc)
    _unavailable(f"the Ray head did not answer within {START_TIMEOUT_S} s ({last}):\n{head.log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of its session still there
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
