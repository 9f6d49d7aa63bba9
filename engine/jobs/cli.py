"""`python -m engine ...`: train, runs, db upgrade, execute (plus submit, worker, cancel, delete: queue_cli;
dispatch: ray_dispatch)."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from sqlalchemy.exc import DBAPIError

from db.config import ConfigError, stored_value
from db import executor
from db.identity import DatabaseChanged
from db.migrate import SchemaError
from db.queries import get_run, list_runs
from db.queue import CLAIM_ENV, claim_for_resume, create_and_claim
from db.session import default_url, describe_url, make_engine, write_tx
from db.status import FAILED, RUNNING, transition, utcnow
from db.views import display_status
from engine.jobs.cli_args import add_config_flags, config_from_values, config_request


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="SimCLR Lab engine")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of the run database "
                        "(default: $SIMCLR_DB, else sqlite:///runs/simclr.db under the project)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run in the foreground, streaming metrics into the database")
    add_config_flags(p)
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--resume", type=int, metavar="RUN_ID",
                   help="continue run RUN_ID from its last checkpoint (other config flags are not allowed)")
    p.add_argument("--no-progress", action="store_true", help="print a line per epoch instead of a progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", action="append", help="only runs with this status (repeatable)")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"], help="upgrade: migrate the schema to this code's version")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("disk", help="disk use of run folders; discard checkpoints",
                       description="Without options: the disk use of every run's folder and the total. "
                                   "--discard deletes checkpoints (a resumed run then starts over).")
    p.add_argument("--discard", type=int, nargs="+", metavar="RUN_ID", default=[],
                   help="delete these runs' checkpoints (not while they run)")
    p.add_argument("--discard-finished", action="store_true",
                   help="delete the checkpoints of every completed, failed and cancelled run")
    p.set_defaults(func=cmd_disk)

    p = sub.add_parser("execute", help=argparse.SUPPRESS)  # a worker's child process: run one claimed run
    p.add_argument("run_id", type=int)
    p.add_argument("--attempt", type=int, required=True, help="the attempt number of the worker's claim")
    p.set_defaults(func=cmd_execute)

    from engine.jobs.annotate_cli import add_annotation_commands
    from engine.jobs.queue_cli import add_queue_commands
    from engine.jobs.ray_dispatch import add_dispatch_command

    add_queue_commands(sub)
    add_annotation_commands(sub)
    add_dispatch_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, SchemaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DatabaseChanged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except DBAPIError as e:
        # Corrupt, read-only, full or unreachable: one line naming the database, not a traceback.
        print(f"error: {database_fault(e, args.db)}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        # `python -m engine runs | head`: the reader has gone, which is not an error. Point stdout
        # at /dev/null so that the interpreter's final flush does not raise (and print) again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def database_fault(e: DBAPIError, url: str | None) -> str:
    reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e).splitlines()[0]
    return f"the run database {describe_url(url or default_url())} cannot be used: {reason}"


def cmd_train(args: argparse.Namespace) -> int:
    overrides, grid = config_request(args)
    if grid:
        raise ConfigError("preset", f"{', '.join(args.preset)} makes a sweep over {', '.join(k for k, _ in grid)}: "
                                    "enqueue it with `submit --preset ...` and run a worker")
    db = make_engine(args.db)
    host, pid = socket.gethostname(), os.getpid()
    claim = dict(worker_id=f"cli:{host}:{pid}", pid=pid, executor=executor.command_line(host, pid))
    if args.resume is not None:
        if overrides:
            raise ConfigError(next(iter(overrides)), "cannot be changed when resuming (--resume uses the run's config)")
        run = claim_for_resume(db, args.resume, **claim)
    else:
        cfg = config_from_values(overrides)  # validates every field before anything is written
        # Claimed like any worker's run, so its heartbeat and final status check the same claim.
        run = create_and_claim(db, cfg, name=args.name, **claim)
    print(f"run {run['id']}  (database {db.url.render_as_string(hide_password=True)})", flush=True)
    return _execute(db, run, progress=not args.no_progress)


def _execute(db, run: dict, *, progress: bool) -> int:  # noqa: ANN001
    from engine.jobs.progress import ProgressBar
    from engine.jobs.runner import execute_run, run_summary_line

    run_id, cfg = run["id"], run["config"]
    if cfg.get("devices", 1) > 1:
        return _execute_processes(db, run_id, run["attempts"], cfg["devices"])
    bar = ProgressBar(cfg["batch_size"], cfg["epochs"]) if progress else None
    try:
        status = execute_run(db, run_id, run["attempts"], on_step=bar.update if bar else None,
                             log=bar.write if bar else lambda m: print(m, flush=True))
    finally:
        if bar:
            bar.close()
    print(run_summary_line(get_run(db, run_id), run_id), flush=True)
    return 1 if status == "failed" else 0


def _execute_processes(db, run_id: int, attempt: int, devices: int) -> int:  # noqa: ANN001
    """A run with devices > 1 in the foreground: torchrun starts its processes (their lines, no bar)."""
    import subprocess

    from db.queue import describe_exit
    from engine.jobs.launch import execute_command, process_env
    from engine.jobs.runner import run_summary_line

    # The machine's cores split between the processes (torchrun would otherwise give each one thread).
    threads = os.environ.get("SIMCLR_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // devices))
    env = {**os.environ, **process_env(db.url.render_as_string(hide_password=False)),
           "SIMCLR_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    proc = subprocess.Popen(execute_command(run_id, attempt, devices), env=env)
    try:
        proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached torchrun too: it stops the processes, the run ends cancelled
        proc.wait()
    with write_tx(db) as conn:  # killed, or a process died before recording an outcome: say so
        unrecorded = transition(conn, run_id, FAILED, expect=RUNNING, attempt=attempt,
                                error=describe_exit(proc.returncode))
    run = get_run(db, run_id)
    if unrecorded:  # else process 0 has printed the summary
        print(run_summary_line(run, run_id), flush=True)
    return 0 if run is not None and run["status"] in ("completed", "cancelled") else 1


def cmd_execute(args: argparse.Namespace) -> int:
    from engine.jobs.runner import execute_run, run_summary_line

    from engine.simclr.distributed import env_rank

    db = make_engine(args.db)
    main = env_rank() == 0  # one header and one summary per run, not per process
    if main:
        # Where and with what it runs, first in its log (a Ray job's log is the only record of its node).
        print(f"run {args.run_id}: pid {os.getpid()} on {socket.gethostname()}, "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
              f"SIMCLR_NUM_THREADS={os.environ.get('SIMCLR_NUM_THREADS')!r}", flush=True)
    status = execute_run(db, args.run_id, args.attempt, log=lambda m: print(m, flush=True),
                         claim=os.environ.get(CLAIM_ENV))
    if main:
        print(run_summary_line(get_run(db, args.run_id), args.run_id), flush=True)
    return 1 if status == "failed" else 0


def cmd_runs(args: argparse.Namespace) -> int:
    db = make_engine(args.db)
    rows = list_runs(db, status=args.status, limit=args.limit)
    now = utcnow()
    header = f"{'id':>5}  {'status':<10} {'dataset':<13} {'encoder':<9} {'stem':<8} {'opt':<5} " \
             f"{'batch':>5} {'subset':>6} {'epochs':>6} {'knn':>6} {'linear':>6} {'probe':<6} name"
    print(header)
    for r in rows:
        fmt = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
        # The dashboard's word for it: "dead" (no heartbeat) and "cancelling" are running runs too.
        print(f"{r['id']:>5}  {display_status(r, now):<10} {r['dataset']:<13} {r['encoder']:<9} {r['config'].get('stem', ''):<8} "
              f"{r['optimizer']:<5} {r['batch_size']:>5} {r['subset_size'] or 'all':>6} {r['epochs']:>6} "
              f"{fmt(r['knn_top1']):>6} {fmt(r['linear_top1']):>6} {stored_value(r['config'], 'probe'):<6} "
              f"{r['name'] or ''}")
    if not rows:
        print("(no runs)")
    return 0


def cmd_disk(args: argparse.Namespace) -> int:
    from db.run_files import discard_checkpoint, human, run_bytes, total_bytes
    from db.status import FINISHED

    db = make_engine(args.db)
    rows = list_runs(db)
    targets = list(args.discard) + ([r["id"] for r in rows if r["status"] in FINISHED] if args.discard_finished else [])
    for run_id in targets:
        print(discard_checkpoint(db, run_id))
    if targets:
        return 0
    sizes = run_bytes(db, [r["id"] for r in rows])
    print(f"{'id':>5}  {'status':<10} {'disk':>9}  name")
    for r in rows:
        print(f"{r['id']:>5}  {r['status']:<10} {human(sizes[r['id']]):>9}  {r['name'] or ''}")
    print(f"total: {human(total_bytes(db))} in run folders")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from db.migrate import upgrade

    db = make_engine(args.db, upgrade=False)
    before, after = upgrade(db)
    print(f"database {db.url.render_as_string(hide_password=True)}: schema {before or 'empty'} -> {after}")
    return 0


__all__ = ["main", "build_parser"]
