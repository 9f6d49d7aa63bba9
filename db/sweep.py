"""Sweeps: a grid of config values expanded into validated runs, enqueued all or none.

`python -m engine submit --grid FIELD=V1,V2 ...` and the dashboard's grid mode share these, so
the CLI and the form accept and refuse the same grids.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import Engine

from db.config import ConfigError, RunConfig, config_fields, config_from_text
from db.queries import create_runs
from db.status import utcnow

MAX_SWEEP_RUNS = 1000  # a typo like seed=0..9999 should be an error, not ten thousand queued runs


class SweepError(ValueError):
    """A grid that cannot be enqueued; nothing was enqueued."""


def parse_grid(entries: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`["batch_size=64,128", "subset-size=300,1500"]` -> [(field, [text values]), ...], fields checked."""
    known = {f.name for f in config_fields()}
    grid: list[tuple[str, list[str]]] = []
    for entry in entries:
        key, sep, text = entry.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        values = [v.strip() for v in text.split(",")]
        if not sep or not key or not text.strip() or "" in values:
            raise SweepError(f"--grid {entry!r}: expected FIELD=V1,V2,... (e.g. batch_size=64,128)")
        if key not in known:
            raise SweepError(f"--grid {entry!r}: unknown configuration field {key!r} (known: {', '.join(sorted(known))})")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid: {key} given twice; list all its values in one --grid {key}=...")
        if len(set(values)) != len(values):
            raise SweepError(f"--grid {entry!r}: a value is listed twice (vary seed to repeat a run)")
        grid.append((key, values))
    return grid


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
    combos = [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]
    if len(combos) > MAX_SWEEP_RUNS:
        raise SweepError(f"the grid has {len(combos)} combinations; at most {MAX_SWEEP_RUNS} may be enqueued at once")
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


def new_sweep_id() -> str:
    return f"sweep-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def enqueue(engine: Engine, plan: Sequence[tuple[Mapping[str, Any], RunConfig]], *, sweep: bool,
            name: str | None = None, retries: int = 1) -> tuple[str | None, list[tuple[int, str]]]:
    """Insert the runs of `plan` (from expand_grid), all or none, as one sweep when `sweep`.

    Returns (sweep id or None, [(run id, combination label), ...]).
    """
    if retries < 0:
        raise SweepError("--retries must be >= 0")
    sweep_id = new_sweep_id() if sweep else None
    labels = [combo_label(combo) for combo, _ in plan]
    names = [" ".join(p for p in (name, label) if p) or None for label in labels]
    ids = create_runs(engine, [cfg for _, cfg in plan], names=names, sweep_id=sweep_id, retries=retries)
    return sweep_id, list(zip(ids, labels))
