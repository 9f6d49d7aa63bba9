"""Run-database throughput: metric writes, claims, dashboard reads under load, logging cost per step.

    .venv/bin/python bench/db_throughput.py [--pg URL] [--runs 20] [--points 10000] [--seconds 10]

PostgreSQL is measured too when --pg or SIMCLR_TEST_PG gives a server (in a throw-away schema).
Prints, per backend:
  metric rows/s    batched writes the way MetricLogger flushes (one transaction per batch);
  claim latency    claim_next on a queue of runs, median and p95;
  dashboard reads  while 4 processes write like live runs (a flush each 0.25 s, 3 metrics x 10
                   steps, plus the progress update), on 20 runs x 10,000 points of train/loss:
                     latest   the Runs table's query: each of the 20 runs with its newest loss,
                              kNN and linear values (db.views.run_summaries)
                     poll     the live chart's poll: db.queries.metric_rows(after_id=...), the rows
                              newer than those already drawn (here: the last 2 s worth), a query
                              that walks the primary key from after_id
                     curves   all 200,000 points at once (a first paint without downsampling;
                              for information, no target)
                   median and p95 of each;
  logging cost     time inside MetricLogger per training step (3 values, progress, flushes about
                   once a second, with the 4 writers running), as a fraction of a step: of a 40 ms
                   step (an H100 at batch 512, the speed goal in docs/design.md) and of this CPU's fastest
                   tiny step.
Targets (issue 3): dashboard query p95 < 50 ms on SQLite; logging < 1% of a training step.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlalchemy import Engine

from db.config import RunConfig
from db.queries import create_runs, metric_rows, write_metrics, write_progress
from db.queue import claim_next
from db.session import make_engine, scratch_schema, write_tx
from db.views import max_metric_id, run_summaries

CFG = RunConfig(dataset="synthetic", batch_size=16, subset_size=64, epochs=1)
WRITER_FLUSH_S, WRITER_STEPS_PER_FLUSH = 0.25, 10  # a run at 40 steps/s, flushing 4x a second (heavier than real)
NAMES = ("train/loss", "train/lr", "train/images_per_sec")


# ------------------------------------------------------------------------------------ backends
def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e3:7.2f} ms   p95 {pct(values, 0.95) * 1e3:7.2f} ms   (n={len(values)})"


# -------------------------------------------------------------------------------------- writes
def rows_for(run_id: int, first_step: int, steps: int) -> list[dict]:
    now = time.time()
    return [dict(run_id=run_id, name=name, step=s, epoch=0.0, value=1.0 / s, time=now)
            for s in range(first_step, first_step + steps) for name in NAMES]


def bench_writes(engine: Engine, total_rows: int = 60_000, batch_rows: int = 300) -> float:
    [run_id] = create_runs(engine, [CFG])
    steps_per_batch = batch_rows // len(NAMES)
    t0 = time.perf_counter()
    for b in range(total_rows // batch_rows):
        with write_tx(engine) as conn:
            write_metrics(conn, rows_for(run_id, 1 + b * steps_per_batch, steps_per_batch))
    return total_rows / (time.perf_counter() - t0)


def bench_claims(engine: Engine, n: int = 200) -> list[float]:
    create_runs(engine, [CFG] * n)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert claim_next(engine, "bench", "cpu") is not None
        times.append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------------- reads under load
def populate(engine: Engine, n_runs: int, points: int) -> list[int]:
    ids = create_runs(engine, [CFG] * n_runs)
    now = time.time()
    for run_id in ids:
        for start in range(1, points + 1, 5000):
            rows = [dict(run_id=run_id, name="train/loss", step=s, epoch=0.0, value=1.0 / s, time=now)
                    for s in range(start, min(points, start + 4999) + 1)]
            with write_tx(engine) as conn:
                write_metrics(conn, rows)
    return ids


def writer(url: str, run_id: int, first_step: int, stop: mp.Event, counter: mp.Value) -> None:
    """Write like a live run: a batch of rows plus the progress/heartbeat update per flush."""
    engine = make_engine(url)
    step = first_step
    while not stop.is_set():
        write_progress(engine, run_id, rows_for(run_id, step, WRITER_STEPS_PER_FLUSH), {"step": step})
        step += WRITER_STEPS_PER_FLUSH
        with counter.get_lock():
            counter.value += WRITER_STEPS_PER_FLUSH * len(NAMES)
        time.sleep(WRITER_FLUSH_S)
    engine.dispose()


@contextmanager
def writers(url: str, run_ids: list[int], first_step: int) -> Iterator[mp.Value]:
    ctx = mp.get_context("spawn")
    stop, counter = ctx.Event(), ctx.Value("l", 0)
    procs = [ctx.Process(target=writer, args=(url, rid, first_step, stop, counter)) for rid in run_ids]
    for p in procs:
        p.start()
    time.sleep(3)  # let them import and start writing
    try:
        yield counter
    finally:
        stop.set()
        for p in procs:
            p.join(30)


def time_queries(queries: dict[str, Callable[[], object]], seconds: float, every_s: float = 0.05,
                 min_rounds: int = 3) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in queries}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(next(iter(times.values()))) < min_rounds:
        for name, fn in queries.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        time.sleep(every_s)
    return times


def bench_reads(engine: Engine, url: str, n_runs: int, points: int, seconds: float) -> tuple[dict[str, list[float]], float]:
    ids = populate(engine, n_runs, points)
    start = max_metric_id(engine)
    # Each poll asks for what arrived in the last ~2 s (the dashboard's refresh), not since the
    # previous call of this loop: a fair, steady amount of new rows per poll.
    window = [(time.monotonic(), start)]

    def since_2s() -> int:
        now = time.monotonic()
        while len(window) > 1 and now - window[1][0] >= 2.0:
            window.pop(0)
        return window[0][1]

    def note(rows: list) -> None:
        if rows:
            window.append((time.monotonic(), max(r.id if hasattr(r, "id") else r["id"] for r in rows)))

    queries = {
        "latest": lambda: run_summaries(engine, ids=ids),
        "poll": lambda: note(metric_rows(engine, ids, ["train/loss"], after_id=since_2s())),
    }
    with writers(url, ids[:4], points + 1) as counter:
        t0, c0 = time.monotonic(), counter.value
        times = time_queries(queries, seconds)
        times.update(time_queries({"curves": lambda: metric_rows(engine, ids, ["train/loss"])}, 0, min_rounds=3))
        rate = (counter.value - c0) / (time.monotonic() - t0)
    return times, rate


# ------------------------------------------------------------------------------- logging cost
def bench_logging(engine: Engine, url: str, seconds: float, step_s: float = 0.04) -> float:
    """Seconds spent inside MetricLogger per step, for steps of `step_s`, with 4 other writers."""
    import torch

    from engine.simclr.metrics_log import MetricLogger

    [run_id] = create_runs(engine, [CFG])
    others = create_runs(engine, [CFG] * 4)
    logger = MetricLogger(engine, run_id)
    spent, step = 0.0, 0
    with writers(url, others, 1):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(step_s)  # "training"
            step += 1
            loss = torch.tensor(1.0 / step)
            t0 = time.perf_counter()
            logger.log("train/loss", loss, step, 0.0)  # the same calls, per step, as engine/simclr/trainer.py
            logger.log("train/lr", 0.1, step, 0.0)
            if step % 25 == 0:
                logger.log("train/images_per_sec", 1000.0, step, 0.0)
            logger.set_progress(epoch=0, step=step)
            spent += time.perf_counter() - t0
        t0 = time.perf_counter()
        logger.flush()
        spent += time.perf_counter() - t0
    return spent / step


def cpu_tiny_step_s() -> float:
    """This CPU's fastest real step: ResNet18, imagenet stem, 8x8 images, batch 16 (32 views)."""
    import torch

    from engine.simclr.loss import nt_xent
    from engine.simclr.model import build_model

    model = build_model(RunConfig(dataset="synthetic", image_size=8, stem="imagenet", batch_size=16,
                                  subset_size=64, projection_dim=8))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(32, 3, 8, 8)
    times = []
    for _ in range(12):
        t0 = time.perf_counter()
        z = model(x)
        loss = nt_xent(z[:16], z[16:], 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


# ---------------------------------------------------------------------------------------- main
def run_backend(label: str, url: str, args: argparse.Namespace, tiny_step: float) -> None:
    print(f"\n== {label}")
    engine = make_engine(url)
    print(f"metric rows/s (batches of 300 rows, one transaction each): {bench_writes(engine):,.0f}")
    print(f"claim latency (claim_next, one at a time):  {ms(bench_claims(engine))}")
    times, rate = bench_reads(engine, url, args.runs, args.points, args.seconds)
    print(f"dashboard reads, {args.runs} runs x {args.points:,} points, 4 writers at {rate:,.0f} rows/s:")
    for name, values in times.items():
        print(f"  {name:<7} {ms(values)}")
    per_step = bench_logging(engine, url, args.seconds)
    print(f"logging cost per step: {per_step * 1e6:.0f} us = {per_step / 0.04:.3%} of a 40 ms step, "
          f"{per_step / tiny_step:.2%} of this CPU's tiny step ({tiny_step * 1e3:.1f} ms)")
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=os.environ.get("SIMCLR_TEST_PG"), help="PostgreSQL URL (default $SIMCLR_TEST_PG)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed phase")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    tiny_step = cpu_tiny_step_s()
    with tempfile.TemporaryDirectory() as tmp:
        run_backend("SQLite (WAL, file on local disk)", f"sqlite:///{tmp}/bench.db", args, tiny_step)
    if args.pg:
        with scratch_schema(args.pg, prefix="bench") as url:
            run_backend("PostgreSQL", url, args, tiny_step)
    else:
        print("\n(PostgreSQL skipped: give --pg URL or set SIMCLR_TEST_PG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
