"""The app as the README starts it (`./lab.sh serve`), on a free port, with its own database and
run folders under tmp_path, and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
START_TIMEOUT_S = 300  # the first `./lab.sh serve` on a fresh clone installs requirements first


@dataclass
class Server:
    url: str
    db_url: str
    log: Path
    proc: subprocess.Popen
    env: dict[str, str]

    def stop(self) -> None:
        """Stop the dashboard as Ctrl-C in its terminal would (its process group); the workers stay."""
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=30)

    def start(self, log: Path) -> None:
        """`./lab.sh serve` again, on the same port and database, with its output in `log`."""
        self.log, self.proc = log, _serve(self.env, log)
        _wait_healthy(self)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(["./lab.sh", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_healthy(server: Server) -> None:
    deadline = time.time() + START_TIMEOUT_S
    while not _healthy(server.url):
        if server.proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"the app did not come up on {server.url}:\n{server.log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is not installed (./lab.sh test installs Debian's chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # a green CI must have run the browser test
        pytest.skip(message)
    port = _free_port()
    db_url = f"sqlite:///{tmp_path / 'runs' / 'simclr.db'}"
    env = {**os.environ, "SIMCLR_DB": db_url, "SIMCLR_RUNS_DIR": str(tmp_path / "runs"), "SIMCLR_PORT": str(port)}
    for name in ("SIMCLR_NO_LOCAL_WORKER", "SIMCLR_PASSWORD", "SIMCLR_ADDRESS"):
        env.pop(name, None)  # as a person would run it: local worker on, no password, localhost
    log = tmp_path / "server.log"
    url = f"http://localhost:{port}"
    server = Server(url, db_url, log, _serve(env, log), env)
    try:
        _wait_healthy(server)
        yield server
    finally:
        _stop(server.proc, db_url)


def _stop(proc: subprocess.Popen, db_url: str) -> None:
    """Stop the server, then the workers it started (they outlive it on purpose, but not the test)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    from db.models import workers
    from db.session import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        pids = [pid for pid, in conn.execute(select(workers.c.pid).where(workers.c.hostname == socket.gethostname()))]
    engine.dispose()
    for pid in pids:  # workers this test's server started (each leads its own process group), if still alive
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"engine\x00worker" in cmdline:  # not a recycled pid
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def browser_page(server: Server):  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()
