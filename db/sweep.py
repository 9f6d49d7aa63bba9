"""Sweeps: a grid of config values expanded into validated runs, enqueued all or none.

`python -m engine submit --grid FIELD=V1,V2 ...` and the dashboard's grid mode share these, so
the CLI and the form accept and refuse the same grids.
"""

from __future__ import annotations

import itertools
import math
import secrets
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import Engine

from db.config import ConfigError, RunConfig, coerce_field, config_fields, config_from_text
from db.queries import create_runs
from db.status import utcnow

MAX_SWEEP_RUNS = 1000  # a typo like seed=0..9999 should be an error, not ten thousand queued runs
MAX_GRID_TEXT = 10_000  # characters in one --grid entry: far more than 1000 values need
MAX_NAME_CHARS = 200  # runs.name is String(200)
MAX_RETRIES = 100


class SweepError(ValueError):
    """A grid that cannot be enqueued; nothing was enqueued."""


def parse_grid(entries: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`["batch_size=64,128", "subset-size=300,1500"]` -> [(field, [text values]), ...], fields checked."""
    known = {f.name for f in config_fields()}
    grid: list[tuple[str, list[str]]] = []
    for entry in entries:
        if len(entry) > MAX_GRID_TEXT:
            raise SweepError(f"--grid {entry[:40]}...: {len(entry)} characters; at most {MAX_GRID_TEXT}")
        key, sep, text = entry.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        values = [v.strip() for v in text.split(",")]
        if not sep or not key or not text.strip() or "" in values:
            raise SweepError(f"--grid {entry!r}: expected FIELD=V1,V2,... (e.g. batch_size=64,128)")
        if key not in known:
            raise SweepError(f"--grid {entry!r}: unknown configuration field {key!r} (known: {', '.join(sorted(known))})")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid: {key} given twice; list all its values in one --grid {key}=...")
        if len(values) > MAX_SWEEP_RUNS:
            raise SweepError(f"--grid {key}: {len(values)} values; at most {MAX_SWEEP_RUNS} runs may be enqueued at once")
        _refuse_duplicates(entry, key, values)
        grid.append((key, values))
    return grid


def _refuse_duplicates(entry: str, key: str, values: Sequence[str]) -> None:
    """Compare values as values, not text: 64 and 64.0 (or 0.1 and 1e-1) are one run twice."""
    seen: dict[Any, str] = {}
    for text in values:
        try:
            value = coerce_field(key, text)
        except ConfigError as e:
            raise SweepError(f"--grid {entry!r}: {e}") from None
        if value in seen:
            raise SweepError(f"--grid {entry!r}: {seen[value]} and {text} are the same value "
                             "(vary seed to repeat a run)" if seen[value] != text else
                             f"--grid {entry!r}: {text} is listed twice (vary seed to repeat a run)")
        seen[value] = text


def combo_label(combo: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in combo.items())


def expand_grid(base: Mapping[str, Any], grid: Sequence[tuple[str, Sequence[Any]]], *,
                build: Callable[[dict[str, Any]], RunConfig] = config_from_text) -> list[tuple[dict[str, Any], RunConfig]]:
    """Every combination of `grid` over `base`, each validated; [(combination, config), ...].

    Validates all of them before returning any, and reports every bad combination, not only the
    first: fixing a grid one error per attempt is tedious.
    """
    clash = [k for k, _ in grid if k in base]
    if clash:
        raise SweepError(f"{clash[0]} is given both as a single value and in --grid; use one of them")
    keys = [k for k, _ in grid]
    # Counted from the value counts, before a single combination is built: 10 million of them
    # would take gigabytes just to be refused.
    count = math.prod(len(v) for _, v in grid)
    if count > MAX_SWEEP_RUNS:
        raise SweepError(f"the grid has {count:,} combinations; at most {MAX_SWEEP_RUNS} may be enqueued at once")
    combos = [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]
    built, bad = [], []
    for combo in combos:
        try:
            built.append((combo, build({**base, **combo})))
        except ConfigError as e:
            bad.append(f"  {combo_label(combo) or '(the base configuration)'}: {e}")
    if bad:
        raise SweepError(f"{len(bad)} of {len(combos)} combination{'s' if len(combos) != 1 else ''} "
                         f"{'is' if len(bad) == 1 else 'are'} invalid; nothing was enqueued:\n" + "\n".join(bad))
    return built


def check_submission(name: str | None, retries: int) -> None:
    """The free values of a submission besides the config: a name and a retry count."""
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise SweepError(f"--name: at most {MAX_NAME_CHARS} characters; got {len(name)}")
    if name is not None and any(ord(c) < 32 for c in name):
        raise SweepError("--name: control characters (newlines, tabs...) are not allowed")
    if not 0 <= retries <= MAX_RETRIES:
        raise SweepError(f"--retries must be between 0 and {MAX_RETRIES}; got {retries}")


def _clip(text: str) -> str:
    """A sweep run's name is the name plus its grid values: keep it within the column."""
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS - 3] + "..."


def new_sweep_id() -> str:
    return f"sweep-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def enqueue(engine: Engine, plan: Sequence[tuple[Mapping[str, Any], RunConfig]], *, sweep: bool,
            name: str | None = None, retries: int = 1) -> tuple[str | None, list[tuple[int, str]]]:
    """Insert the runs of `plan` (from expand_grid), all or none, as one sweep when `sweep`.

    Returns (sweep id or None, [(run id, combination label), ...]).
    """
    check_submission(name, retries)
    sweep_id = new_sweep_id() if sweep else None
    labels = [combo_label(combo) for combo, _ in plan]
    names = [_clip(" ".join(p for p in (name, label) if p)) or None for label in labels]
    ids = create_runs(engine, [cfg for _, cfg in plan], names=names, sweep_id=sweep_id, retries=retries)
    return sweep_id, list(zip(ids, labels))
