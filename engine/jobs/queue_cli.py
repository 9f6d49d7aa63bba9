"""`python -m engine submit | worker | cancel | delete`: the queue's command-line side.

`engine/jobs/cli.py` owns the parser (and its global `--db URL`); this module adds four subcommands.
Nothing here imports torch: submitting, cancelling and supervising workers stay light.
"""

from __future__ import annotations

import argparse
import sys

from db.delete import delete_runs
from db.queries import list_runs
from db.queue import NoSuchRun, gpus_per_worker, live_workers, request_cancel, too_big_message, unservable
from db.sweep import SweepError, check_submission, enqueue, expand_grid
from db.session import make_engine
from db.status import QUEUED, RUNNING
from engine.jobs.cli_args import add_config_flags, config_from_values, config_request
from engine.jobs.worker import add_worker_flags, cmd_worker


def add_queue_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "submit", help="enqueue a run, or a --grid sweep, for the workers",
        description="Enqueue a run with the same flags as `train`; with --grid, the cartesian product of the "
                    "listed values as one sweep. Every run is validated before any is enqueued.")
    add_config_flags(p)
    p.add_argument("--name", help="a name for the run (a sweep's runs get it plus their grid values)")
    p.add_argument("--retries", type=int, default=1,
                   help="how often a run is requeued after its process or worker is lost (default 1)")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="vary a config field over these values (repeatable: the cartesian product), "
                        "e.g. --grid batch_size=64,128 --grid subset_size=300,1500")
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser(
        "worker", help="run queued runs, each in its own process (one per GPU by default)",
        description="Claim queued runs and run each in its own process until stopped. SIGTERM/Ctrl-C once: "
                    "finish the running runs, claim no more. Twice: stop them now and requeue them.")
    add_worker_flags(p)
    p.set_defaults(func=cmd_worker)

    p = subparsers.add_parser(
        "cancel", help="cancel runs: queued ones at once, running ones within seconds",
        description="A queued run is cancelled at once; a running one stops at its next step or evaluation batch, "
                    "keeps its last checkpoint and ends cancelled.")
    p.add_argument("run_ids", nargs="*", type=int, metavar="RUN_ID")
    p.add_argument("--sweep", metavar="SWEEP_ID", help="cancel every queued or running run of this sweep")
    p.set_defaults(func=cmd_cancel)

    p = subparsers.add_parser(
        "delete", help="delete runs with their metrics, log and checkpoints",
        description="Delete runs as the dashboard's Delete button does: the row, its metric rows and its run "
                    "folder. A running run is refused (cancel it first) unless its heartbeat has stopped.")
    p.add_argument("run_ids", nargs="+", type=int, metavar="RUN_ID")
    p.set_defaults(func=cmd_delete)


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        check_submission(args.name, args.retries)
        base, grid = config_request(args)
        # Every combination is validated before the database is even opened.
        data_memo: dict = {}  # each data source is looked at once, not once per combination
        plan = expand_grid(base, grid, build=lambda v: config_from_values(v, data_memo))
        db = make_engine(args.db)
        sweep_id, queued = enqueue(db, plan, sweep=bool(grid), name=args.name, retries=args.retries)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if sweep_id is None:
        print(f"queued run {queued[0][0]}")
    else:
        print(f"queued sweep {sweep_id}: {len(queued)} run{'s' if len(queued) != 1 else ''}")
        for run_id, label in queued:
            print(f"  run {run_id}  {label}")
    workers = live_workers(db)
    if workers:
        where = ", ".join(f"pid {w['pid']} on {w['hostname']}" for w in workers)
        print(f"{len(workers)} worker{'s' if len(workers) != 1 else ''} alive ({where}): "
              f"{'it' if len(queued) == 1 else 'they'} will run when a slot is free")
        rows = [{"id": run_id, "status": QUEUED, "config": cfg.to_dict()} for (run_id, _), (_, cfg) in zip(queued, plan)]
        stuck = unservable(rows, workers)
        if stuck:
            print(f"warning: {too_big_message(stuck, gpus_per_worker(workers))}", file=sys.stderr)
    else:
        print("no worker is alive: nothing will run until one starts. Start one in the background with "
              "`python -m engine worker --detach` (./lab.sh serve does this too)", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    db = make_engine(args.db)
    run_ids = list(args.run_ids)
    if args.sweep:
        found = list_runs(db, sweep_id=args.sweep, status=(QUEUED, RUNNING))
        if not found:
            print(f"sweep {args.sweep}: no queued or running runs")
        run_ids += sorted(r["id"] for r in found)
    if not run_ids and not args.sweep:
        print("error: give RUN_ID(s) or --sweep SWEEP_ID", file=sys.stderr)
        return 2
    rc = 0
    for run_id in run_ids:
        try:
            print(request_cancel(db, run_id))
        except NoSuchRun as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 1
    return rc


def cmd_delete(args: argparse.Namespace) -> int:
    deleted = delete_runs(make_engine(args.db), args.run_ids)
    for line in deleted.messages:
        print(line)
    return 0 if len(deleted.done) == len(set(args.run_ids)) else 1
