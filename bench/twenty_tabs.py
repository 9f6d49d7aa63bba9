"""Twenty tabs on the Runs page while runs train: how fast does each tab show its table and new
points, and what does the polling cost the server?

    python bench/twenty_tabs.py [--tabs 20] [--seconds 60] [--runs 4] [--fake-training] [--hidden 15]
                                [--open-every 1] [--browser-nice 5] [--run-nice N]

Starts the dashboard (`python -m dashboard`, loopback only, its own database and runs folder in a
temporary folder, no local worker), queues `--runs` small CPU runs and starts one worker with that
many CPU slots (or, with --fake-training, writes a train/loss row per run every 0.1 s itself: the
dashboard's side is the same, without four trainings competing for the cores), then opens `--tabs`
tabs of headless Debian Chromium (Playwright) on the Runs page, one every `--open-every` seconds as
a person opens them, and watches them for `--seconds` once all are open. The runs' processes start
at the worker's default niceness unless `--run-nice` says otherwise. Chromium stands in for twenty people's
browsers, which would run on their own machines: it runs at `--browser-nice` so that what is measured
is the server, not twenty renderers sharing its cores.

Prints, per the issue's goals:
- first table: seconds from opening a tab to its runs table being drawn, with the tabs opened before
  it polling (goal: every tab < 3 s);
- staleness: every 0.5 s, how long the newest train/loss point in the database has been missing
  from a tab's loss chart (goal: < 2 s in every tab, i.e. a new point shows within 2 s);
- server CPU: the dashboard process's CPU time over the watch window, in cores (goal: < 0.5);
- bytes the server sent each tab per second (Chromium's DevTools count of websocket frames): an
  unchanged element travels as a reference to the browser's copy, so this is what changed.
Then a second window of the same length with `--hidden` of the tabs hidden (document.visibilityState,
as when a person switches tabs): server CPU again, and bytes to hidden and to visible tabs. A hidden
tab asks for no redraw (dashboard/poll.py), so the CPU should fall with the share of tabs hidden.
Everything is bounded: a fixed number of tabs, a fixed window, all processes stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from db.config import RunConfig
from db.queries import create_runs, write_metrics
from db.queue import claim_next
from db.session import make_engine, write_tx
from db.views import newest_epoch

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the dashboard did not answer at {url} within {timeout_s:g} s")


def fake_training(db_url: str, run_ids: list[int], stop: threading.Event) -> None:
    """A train/loss row per run every 0.1 s, as a fast CPU run would write them (in batches)."""
    engine = make_engine(db_url)
    step = 0
    while not stop.wait(0.1):
        step += 1
        rows = [dict(run_id=r, name="train/loss", step=step, epoch=step / 50, value=5.0 / (1 + step / 100),
                     time=time.time()) for r in run_ids]
        with write_tx(engine) as conn:
            write_metrics(conn, rows)


def newest_epochs(db_url: str, stop: threading.Event, seen: list[tuple[float, float]]) -> None:
    """(time first seen, epoch) of each new newest train/loss epoch in the database."""
    engine = make_engine(db_url)
    last = -1.0
    while not stop.wait(0.1):
        value = newest_epoch(engine, "train/loss")
        if value is not None and value > last:
            last = value
            seen.append((time.monotonic(), value))


TAB_STATE = """() => {
  // One call per tab per look (each call is a round trip through Playwright's driver, whose CPU
  // competes with the server on a 2-core machine): is the runs table drawn, and the newest epoch
  // in the loss chart (_fullData: plotly's decoded traces; data[i].x may still be {dtype, bdata}).
  const table = document.querySelector('[data-testid="stDataFrame"]') !== null;
  const divs = [...document.querySelectorAll('.js-plotly-plot')];
  const loss = divs.find(d => (d.layout && d.layout.title && d.layout.title.text || '').toLowerCase().includes('loss'));
  if (!loss || !loss._fullData) return [table, null];
  let m = -1;
  for (const t of loss._fullData) for (const x of (t.x || [])) if (x > m) m = x;
  return [table, m];
}"""


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


HIDE = """state => {
  Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def renice_browser(nice: int) -> None:
    """Chromium's processes (below the Playwright driver, below us) at `nice`; the renderers of tabs
    opened later inherit it from the browser process that forks them."""
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name().lower():
                proc.nice(nice)
        except psutil.Error:
            pass


def cpu_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the processes on this machine that take part, by role."""
    groups = {"dashboard server": 0.0, "run processes + worker": 0.0, "Chromium": 0.0,
              "Playwright driver": 0.0, "this script": 0.0}
    me = psutil.Process()
    for proc in psutil.process_iter(["name", "cpu_times"]):
        try:
            if proc.pid == me.pid:
                role = "this script"
            elif proc.pid == server_pid or server_pid in [p.pid for p in proc.parents()]:
                role = "dashboard server"
            elif "chrom" in proc.info["name"].lower():
                role = "Chromium"
            elif proc.info["name"] == "node" or "playwright" in " ".join(proc.cmdline()):
                role = "Playwright driver"
            elif "engine" in proc.cmdline():
                role = "run processes + worker"
            else:
                continue
            times = proc.info["cpu_times"]
            groups[role] += times.user + times.system
        except psutil.Error:
            pass
    return groups


def count_bytes(page) -> list[int]:  # noqa: ANN001
    """A counter of the bytes the server sends this tab over its websocket (DevTools' own count)."""
    counter = [0]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on("Network.webSocketFrameReceived", lambda e: counter.__setitem__(0, counter[0] + len(e["response"]["payloadData"])))
    return counter


def watch(pages: list, opened: list[float], first_table: list[float | None], staleness: list[list[float]],
          seen: list[tuple[float, float]], end: float, skip: frozenset[int] = frozenset()) -> None:
    """Every 0.5 s (or as fast as a loaded machine allows): which tabs show a table, and how far
    each tab's loss chart is behind the database (tabs in `skip`, hidden ones, are not looked at)."""
    while time.monotonic() < end:
        tick = time.monotonic()
        for i, page in enumerate(pages):
            if i in skip:
                continue
            try:
                table, shown = page.evaluate(TAB_STATE)
            except Exception:  # noqa: BLE001 — a tab mid-navigation
                table, shown = False, None
            if first_table[i] is None and table:
                first_table[i] = time.monotonic() - opened[i]
            now = time.monotonic()
            if shown is not None and seen:
                missing = [t for t, e in seen if e > shown + 1e-9]
                staleness[i].append(now - missing[0] if missing else 0.0)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tabs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--fake-training", action="store_true",
                    help="write the runs' metric rows from this script instead of training them")
    ap.add_argument("--hidden", type=int, default=15, help="tabs hidden in the second window (0: no second window)")
    ap.add_argument("--open-every", type=float, default=1.0, metavar="S", help="seconds between opening two tabs")
    ap.add_argument("--browser-nice", type=int, default=5, metavar="N", help="niceness of Chromium (0 to 19)")
    ap.add_argument("--run-nice", type=int, default=None, metavar="N",
                    help="the worker's --nice for the runs' processes (default: the worker's own default)")
    args = ap.parse_args()
    if not (1 <= args.tabs <= 50 and 5 <= args.seconds <= 600 and 1 <= args.runs <= 8 and 0 <= args.hidden < args.tabs
            and 0 <= args.open_every <= 10 and 0 <= args.browser_nice <= 19):
        raise SystemExit("--tabs 1..50, --seconds 5..600, --runs 1..8, --hidden 0..tabs-1, --open-every 0..10, "
                         "--browser-nice 0..19")

    from playwright.sync_api import sync_playwright

    # `timeout` and Ctrl-C end the watch early but still stop every process and print what was seen.
    signal.signal(signal.SIGTERM, _interrupt)

    tmp = Path(tempfile.mkdtemp(prefix="twenty-tabs-"))
    db_url = f"sqlite:///{tmp / 'simclr.db'}"
    port = free_port()
    env = {**os.environ, "SIMCLR_DB": db_url, "SIMCLR_RUNS_DIR": str(tmp / "runs"), "SIMCLR_PORT": str(port),
           "SIMCLR_NO_LOCAL_WORKER": "1", "PYTHONPATH": str(ROOT)}
    env.pop("SIMCLR_ADDRESS", None)
    env.pop("SIMCLR_PASSWORD", None)
    engine = make_engine(db_url)
    cfg = RunConfig(dataset="cifar10-mini", encoder="resnet18", stem="cifar", batch_size=64, subset_size=640,
                    epochs=1000, eval_every=1000, device="cpu", precision="fp32")
    run_ids = create_runs(engine, [cfg.replace(seed=i) for i in range(args.runs)])
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    threads = []
    if args.fake_training:
        for r in run_ids:  # claimed like any run (one claim path), by a worker that never heartbeats
            claim_next(engine, "bench", "cpu", run_id=r)
        threads.append(threading.Thread(target=fake_training, args=(db_url, run_ids, stop), daemon=True))
    else:
        nice = [] if args.run_nice is None else ["--nice", str(args.run_nice)]
        procs.append(subprocess.Popen([sys.executable, "-m", "engine", "worker", "--devices", "cpu",
                                       "--slots", str(args.runs), *nice], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT, start_new_session=True))
    server = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(server)
    seen: list[tuple[float, float]] = []
    threads.append(threading.Thread(target=newest_epochs, args=(db_url, stop, seen), daemon=True))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        for t in threads:
            t.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            renice_browser(args.browser_nice)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            # Warm-up: the server's first script run imports pandas and plotly (seconds); a dashboard
            # that has been up for a while has done that long before anyone opens twenty tabs.
            warm = context.new_page()
            warm.goto(f"{url}/runs")
            warm.wait_for_selector('[data-testid="stDataFrame"]', timeout=180_000)
            warm.close()
            pages, opened, received = [], [], []
            first_table: list[float | None] = [None] * args.tabs
            for i in range(args.tabs):
                page = context.new_page()
                received.append(count_bytes(page))
                opened.append(time.monotonic())
                page.goto(f"{url}/runs", wait_until="commit")
                pages.append(page)
                # Watch the open tabs until the next one is due (first tables are timed meanwhile).
                watch(pages, opened, first_table, [[] for _ in pages], seen, opened[-1] + args.open_every)
            server_ps = psutil.Process(server.pid)
            cpu0, wall0 = sum(server_ps.cpu_times()[:2]), time.monotonic()
            groups0 = cpu_by_group(server.pid)
            staleness: list[list[float]] = [[] for _ in pages]
            end = wall0 + args.seconds
            sent0 = [c[0] for c in received]
            hidden = frozenset(range(args.tabs - args.hidden, args.tabs))
            window2 = None
            try:
                watch(pages, opened, first_table, staleness, seen, end)
                cpu1, wall1 = sum(server_ps.cpu_times()[:2]), time.monotonic()
                groups1 = cpu_by_group(server.pid)
                sent1 = [c[0] for c in received]
                if hidden:
                    for i in hidden:
                        pages[i].evaluate(HIDE, "hidden")
                    staleness2: list[list[float]] = [[] for _ in pages]
                    watch(pages, opened, first_table, staleness2, seen, wall1 + args.seconds, skip=hidden)
                    cpu2, wall2 = sum(server_ps.cpu_times()[:2]), time.monotonic()
                    sent2 = [c[0] for c in received]
                    window2 = (cpu2 - cpu1) / (wall2 - wall1), staleness2, [(b - a) / (wall2 - wall1)
                                                                           for a, b in zip(sent1, sent2)]
            except KeyboardInterrupt:
                print("interrupted: the figures below cover the window until then")
                cpu1, wall1 = sum(server_ps.cpu_times()[:2]), time.monotonic()
                groups1 = cpu_by_group(server.pid)
                sent1 = [c[0] for c in received]
            try:
                browser.close()
            except Exception:  # noqa: BLE001 — interrupted mid-call
                pass
    finally:
        stop.set()
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    loaded = [t for t in first_table if t is not None]
    worst = [max(s) if s else float("nan") for s in staleness]
    print(f"tabs {args.tabs}, window {args.seconds:g} s, runs {args.runs} "
          f"({'fake training' if args.fake_training else 'CPU training'}), cores {psutil.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"first table: {len(loaded)}/{args.tabs} tabs; median {statistics.median(loaded) if loaded else float('nan'):.1f} s, "
          f"max {max(loaded) if loaded else float('nan'):.1f} s; within 3 s: {sum(t <= 3 for t in loaded)}")
    print(f"staleness of the loss chart (worst per tab): median {statistics.median(worst):.1f} s, "
          f"max {max(worst):.1f} s; tabs always within 2 s: {sum(w <= 2 for w in worst)}/{args.tabs}")
    cores1 = (cpu1 - cpu0) / (wall1 - wall0)
    rate1 = [(b - a) / (wall1 - wall0) for a, b in zip(sent0, sent1)]
    print(f"server CPU: {cores1:.2f} cores over {wall1 - wall0:.0f} s")
    print("CPU by role over that window, in cores: " + ", ".join(
        f"{role} {(groups1[role] - groups0[role]) / (wall1 - wall0):.2f}" for role in groups0))
    print(f"bytes sent per tab: median {statistics.median(rate1) / 1000:.1f} kB/s, max {max(rate1) / 1000:.1f} kB/s")
    if window2:
        cores2, staleness2, rate2 = window2
        shown = [i for i in range(args.tabs) if i not in hidden]
        worst2 = [max(staleness2[i]) if staleness2[i] else float("nan") for i in shown]
        print(f"with {len(hidden)} of {args.tabs} tabs hidden: server CPU {cores2:.2f} cores "
              f"({cores2 / cores1:.2f}x all visible); bytes per hidden tab: max {max(rate2[i] for i in hidden) / 1000:.2f} kB/s, "
              f"per visible tab: median {statistics.median(rate2[i] for i in shown) / 1000:.1f} kB/s; "
              f"visible tabs' worst staleness: max {max(worst2):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
