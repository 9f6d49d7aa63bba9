"""The command line that executes one claimed run: one process, or torchrun with one per device.

Shared by every executor (the local worker, `train` in the foreground, a cluster dispatcher), so a
run with `devices` > 1 is launched the same way wherever it runs. Torch-free: the worker imports it.
"""

from __future__ import annotations

import os
import sys

from db.config import PROJECT_ROOT


def execute_command(run_id: int, attempt: int, devices: int = 1) -> list[str]:
    """`python -m engine execute RUN_ID --attempt N`, under torchrun when the run wants several devices.

    The attempt travels along so that the run's own heartbeat checks the claim (worker, attempt)
    as its worker does. The database URL travels in SIMCLR_DB (not argv: `ps` shows argv, and a
    PostgreSQL URL may carry a password).
    """
    return with_processes([sys.executable, "-m", "engine", "execute", str(run_id), "--attempt", str(attempt)],
                          devices)


def with_processes(command: list[str], processes: int) -> list[str]:
    """`command` (a Python command line: interpreter, then a script or `-m module`, then arguments)
    started `processes` times by torch's own launcher, which sets RANK, LOCAL_RANK and WORLD_SIZE.

    `--standalone`: a rendezvous on this machine on a free port, so several multi-process runs
    can share a machine. No restarts (`--max-restarts 0`): a failed attempt goes back to the queue,
    which decides about retries and resumes from the checkpoint.
    """
    if processes <= 1:
        return command
    interpreter, target, *args = command
    module = ["-m", args.pop(0)] if target == "-m" else [target]
    return [interpreter, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "--max-restarts=0", *module, *args]


def process_env(db_url: str) -> dict[str, str]:
    """What a run's process needs in its environment besides the executor's own."""
    return {"SIMCLR_DB": db_url, "PYTHONUNBUFFERED": "1",
            # `-m engine` must import from this checkout whatever the executor's cwd is.
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
