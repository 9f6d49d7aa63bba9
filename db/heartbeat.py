"""How often workers and runs say they are alive, and how long a silence means they are lost.

One place for both figures, shared by the worker (its own heartbeat and the stale-run sweep), the
run's process (engine/jobs/runner.py), `train --resume`, the dashboard's "dead" and its check for
a live worker. Each worker stores its own `--stale-after` with its row (`workers.stale_after_s`),
so the dashboard calls a run dead by the limit its worker actually applies.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any, Mapping

# Seconds between heartbeats. SIMCLR_HEARTBEAT_S lets tests (and impatient operators) beat faster;
# it is read once, so a worker and the run processes it starts (they inherit its environment) agree.
def _heartbeat_s(text: str | None) -> float:
    try:
        seconds = float(text or 5.0)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"SIMCLR_HEARTBEAT_S must be a number of seconds > 0; got {text!r}")
    return seconds


HEARTBEAT_S = _heartbeat_s(os.environ.get("SIMCLR_HEARTBEAT_S"))

# A running run (or a worker) silent for this long is lost: its runs are requeued or failed.
STALE_AFTER_S = 60.0

# A limit of fewer heartbeats than this would call healthy runs lost after one slow commit or one
# busy second: `worker --stale-after 0` would requeue every other worker's runs at once.
MIN_STALE_HEARTBEATS = 3


def min_stale_after_s() -> float:
    return MIN_STALE_HEARTBEATS * HEARTBEAT_S


def check_stale_after(seconds: float) -> float:
    """`seconds` when it is a usable staleness limit; else ValueError saying what is allowed."""
    low = min_stale_after_s()
    if not math.isfinite(seconds) or seconds < low:
        raise ValueError(f"--stale-after must be a number of seconds >= {low:g} ({MIN_STALE_HEARTBEATS} "
                         f"heartbeats of {HEARTBEAT_S:g} s), so that a healthy run is never taken for lost; "
                         f"got {seconds:g}")
    return seconds


def last_sign_of_life(run: Mapping[str, Any]) -> datetime | None:
    return run.get("heartbeat_at") or run.get("started_at")


def stale_limit_s(run: Mapping[str, Any]) -> float:
    """The staleness limit of `run`'s worker (stored with the worker), else the default."""
    return run.get("stale_after_s") or STALE_AFTER_S


def is_stale(run: Mapping[str, Any], now: datetime) -> bool:
    """True when `run` (a row with heartbeat_at, started_at and, joined in, stale_after_s) has been
    silent for longer than its worker's limit."""
    last = last_sign_of_life(run)
    return last is not None and (now - last).total_seconds() > stale_limit_s(run)
