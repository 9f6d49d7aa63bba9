"""The `executor` column: where a run executes, in words, and the Ray dashboard link inside it.

One text column rather than a table of executor kinds: it is for people (the Runs table and the run
page show it as is), and the only thing read back out of it is the Ray job's dashboard link.

    worker HOST:PID slot N (DEVICE)                       a local worker's slot(s) (engine/jobs/worker.py)
    command line HOST:PID                                 `python -m engine train` in the foreground
    ray job SUBMISSION_ID [on node IP] [· dashboard URL]  the Ray dispatcher (engine/jobs/ray_dispatch.py)
"""

from __future__ import annotations

import re
from typing import Sequence

_RAY = re.compile(r"^ray job (?P<sid>\S+)(?: on node (?P<node>\S+))?(?: · dashboard (?P<url>\S+))?$")


def local_worker(host: str, pid: int, slots: Sequence[int], device: str) -> str:
    """`device`: the slots' devices as the worker labels them ("cuda:0", "cuda:0,cuda:1", "cpu x2")."""
    return f"worker {host}:{pid} slot{'s' if len(slots) > 1 else ''} {','.join(map(str, slots))} ({device})"


def command_line(host: str, pid: int) -> str:
    return f"command line {host}:{pid}"


def ray_job(submission_id: str, node_ip: str | None = None, dashboard: str | None = None) -> str:
    text = f"ray job {submission_id}"
    if node_ip:
        text += f" on node {node_ip}"
    if dashboard:
        text += f" · dashboard {dashboard.rstrip('/')}"
    return text


def ray_job_link(executor: str | None) -> str | None:
    """The Ray dashboard's page of the run's job, when the executor is a Ray job with a known dashboard."""
    m = _RAY.match(executor or "")
    if not m or not m["url"]:
        return None
    return f"{m['url']}/#/jobs/{m['sid']}"


def label(executor: str | None) -> str:
    """The executor without the dashboard address, for tables."""
    return (executor or "").split(" · dashboard ")[0]
