"""Page script time of the dashboard's pages (Runs, Compare, Workers, Run detail) at 50 runs x 10,000 points each.

    .venv/bin/python bench/dashboard_render.py [--runs 50] [--points 10000] [--repeat 5]

Builds a throw-away SQLite database (a sweep of completed runs with linear-probe results, plus a
dozen running ones), then runs each page through streamlit.testing's AppTest, which executes the
real page script (auth, navigation, sidebar, queries, downsampling, figure building) without a
browser. Reported: the first run of each page (history read from the database) and the median of
the following runs (what a live fragment tick or a widget change costs), and how many points the
browser is sent. Target: under 1 s per page.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import numpy as np
from db.config import (CHECKPOINT_FILE, CHECKPOINT_INFO_FILE, ENCODER_FILE, ENCODER_INFO_FILE, INSIGHTS_FILE,
                       RunConfig, run_dir)
from db.identity import database_id
from db.queries import SYS_CPU, SYS_GPU_MEMORY, SYS_GPU_UTIL, SYS_MEMORY, create_runs, update_run, write_metrics
from db.queue import claim_next, register_worker
from db.session import make_engine, write_tx
from db.status import COMPLETED, transition

SYS_NAMES = (SYS_CPU, SYS_MEMORY, SYS_GPU_UTIL, SYS_GPU_MEMORY)
RUNNING = 12  # the Runs page draws the running runs' curves by default
SYS_SAMPLES = 720  # device-use samples per series of a running run: an hour at one per 5 s


def build(url: str, n_runs: int, n_points: int) -> None:
    engine = make_engine(url)
    configs = [RunConfig(subset_size=s, batch_size=b, seed=seed, epochs=10)
               for seed in range(5) for s in (300, 500, 1000, 1500, 2000) for b in (64, 128)][:n_runs]
    ids = create_runs(engine, configs, sweep_id="sweep-bench")
    t0 = time.time()
    for i, run_id in enumerate(ids):
        running = i >= n_runs - RUNNING
        # The running runs are held by the workers registered below, one GPU machine each.
        worker, device = (f"gpu{i % 4}:100:1", f"cuda:{i % 4}") if running else ("bench", "cpu")
        claim_next(engine, worker, device, run_id=run_id)
        update_run(engine, run_id, total_steps=n_points * 2, step=n_points)
        with write_tx(engine) as conn:
            if not running:
                transition(conn, run_id, COMPLETED, linear_loss=0.5 + 0.001 * i, linear_top1=0.7 + 0.001 * i)
            rows = [{"run_id": run_id, "name": "train/loss", "step": s, "epoch": s / 100, "value": 5.0 / (1 + s / 500),
                     "time": t0 + s * 0.1} for s in range(1, n_points + 1)]
            rows += [{"run_id": run_id, "name": "knn/top1", "step": s, "epoch": s / 100, "value": 0.3 + s / n_points / 2,
                      "time": t0 + s * 0.1} for s in range(100, n_points + 1, 100)]
            if running:
                rows += [{"run_id": run_id, "name": name, "step": s, "epoch": 0.0, "value": 50.0 + s % 7,
                          "time": t0 + 5 * s} for name in SYS_NAMES for s in range(SYS_SAMPLES)]
            write_metrics(conn, rows)
    for w in range(4):  # workers, one GPU machine each, holding the running runs
        register_worker(engine, f"gpu{w}:100:1", hostname=f"gpu{w}", pid=100 + w, slots=4,
                        devices="cuda:0,cuda:1,cuda:2,cuda:3")
    _run_files(ids[0], database_id(engine))
    update_run(engine, ids[0], checkpoint_path=str(run_dir(ids[0], database_id(engine)) / CHECKPOINT_FILE))
    engine.dispose()


def _run_files(run_id: int, db_id: str) -> None:
    """What a completed run leaves in its folder: checkpoint, encoder and insights of real sizes."""
    folder = run_dir(run_id, db_id)
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in ((CHECKPOINT_FILE, 90_000_000), (ENCODER_FILE, 45_000_000)):
        with open(folder / name, "wb") as f:
            f.truncate(size)  # sparse: the page only stats these
    (folder / CHECKPOINT_INFO_FILE).write_text(json.dumps({"epoch": 10, "step": 100, "saved_at": time.time()}))
    (folder / ENCODER_INFO_FILE).write_text(json.dumps({"encoder": "resnet18", "stem": "cifar", "feature_dim": 512,
                                                        "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                                                        "epoch": 10, "step": 100, "saved_at": time.time()}))
    rng = np.random.default_rng(0)
    q, k = 10, 8  # engine/simclr/insights.py's MAX_QUERIES and K, CIFAR-sized thumbnails
    arrays = {"query_index": np.arange(q), "query_label": np.arange(q),
              "query_images": rng.integers(0, 255, (q, 32, 32, 3), dtype=np.uint8),
              "bank_index": np.arange(500), "classes": np.array([f"class{c}" for c in range(10)]), "k": np.array(k),
              "map_xy": rng.normal(size=(1000, 2)), "map_explained": np.array([0.2, 0.1]),
              "map_index": np.arange(1000), "map_label": np.arange(1000) % 10}
    for name in ("trained", "untrained"):
        arrays.update({f"{name}_index": rng.integers(0, 5000, (q, k)), f"{name}_similarity": np.ones((q, k)),
                       f"{name}_label": rng.integers(0, 10, (q, k)),
                       f"{name}_images": rng.integers(0, 255, (q, k, 32, 32, 3), dtype=np.uint8)})
    np.savez_compressed(folder / INSIGHTS_FILE, **arrays)


def _length(values: object) -> int:
    # plotly sends numeric arrays as {"dtype": "f8", "bdata": base64}; count their elements
    if isinstance(values, dict) and "bdata" in values:
        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values or [])


def points_sent(at) -> int:  # noqa: ANN001
    total = 0
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        total += sum(_length(trace.get("x")) for trace in spec.get("data", []))
    return total


def _timed(at) -> tuple[float, float]:  # noqa: ANN001
    # Wall time is what a user waits; CPU time (this process, all threads: AppTest runs the script
    # in a thread) is what the page costs, and does not grow when other jobs share the cores.
    wall, cpu = time.perf_counter(), time.process_time()
    at.run()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_page(page: str, query: dict[str, str], repeat: int) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.query_params.update(query)
    at.run()  # the entry page once: imports and caches, as a server that has been up a while
    at.switch_page(f"screens/{page}.py")
    first_wall, first_cpu = _timed(at)
    assert not at.exception, [e.message for e in at.exception]
    later = [_timed(at) for _ in range(repeat)]
    return {"first_s": first_wall, "first_cpu_s": first_cpu,
            "median_s": statistics.median(w for w, _ in later), "median_cpu_s": statistics.median(c for _, c in later),
            "max_s": max(w for w, _ in later), "points_sent": points_sent(at), "charts": len(at.get("plotly_chart")),
            "tables": len(at.dataframe)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        os.environ.update(SIMCLR_DB=url, SIMCLR_RUNS_DIR=f"{tmp}/runs", SIMCLR_NO_LOCAL_WORKER="1")
        os.environ.pop("SIMCLR_PASSWORD", None)
        t = time.perf_counter()
        build(url, args.runs, args.points)
        print(f"database: {args.runs} runs x {args.points} train/loss points (+ knn/top1), "
              f"built in {time.perf_counter() - t:.1f} s")
        for page, query, what in (
            ("runs", {}, f"Runs: table of {args.runs} runs, live curves of the {RUNNING} running ones"),
            ("runs", {"q": "batch_size>=128 linear_top1>0", "sort": "linear_top1"},
             "Runs, filtered and sorted from a link (?q=batch_size>=128 linear_top1>0&sort=linear_top1)"),
            ("compare", {"sweep": "sweep-bench"}, f"Compare: sweep of {args.runs} runs, train/loss overlaid, "
                                                  "seed tables, sweep analysis, config diff"),
            ("workers", {}, f"Workers: 4 workers, the queue, device use of the {RUNNING} running runs "
                            f"({SYS_SAMPLES} samples x 4 series each)"),
            ("run_detail", {"run": "1"}, "Run detail of a completed run: curves, files, neighbour grids, feature map"),
        ):
            r = time_page(page, query, args.repeat)
            ok = "ok" if max(r["first_s"], r["median_s"]) < 1.0 else "OVER 1 s"
            print(f"{what}\n  first run {r['first_s']:.3f} s wall ({r['first_cpu_s']:.3f} s CPU), then median "
                  f"{r['median_s']:.3f} s wall ({r['median_cpu_s']:.3f} s CPU, max wall {r['max_s']:.3f} s) over "
                  f"{args.repeat} reruns; {r['charts']} charts, {r['tables']} tables, "
                  f"{r['points_sent']} points sent to the browser  [{ok}]")
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
