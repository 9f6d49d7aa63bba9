"""Result tables for Compare: the config diff and the seed experiment's layout.

The seed experiment's table has one row per (data subset, batch size) and two columns, the linear
classifier's test loss and top-1 accuracy, for ResNet18 + LARS. Here: one such table per encoder +
optimizer (and per any other setting that differs among the chosen runs, so that, say, 10-epoch
and 100-epoch runs never share a cell), and runs that differ only in their seed share a cell as
mean +- sample standard deviation (ddof=1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from db.config import config_fields
from dashboard.common import run_label
from dashboard.launch_form import value_text

TABLE_KEYS = ("encoder", "optimizer")  # one table per combination of these
ROW_KEYS = ("subset_size", "batch_size")  # the rows of each table
REPEAT_KEY = "seed"  # runs differing only here are repeats of one cell


def _values(runs: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Config field -> its value in each run (the default where a stored config lacks it)."""
    return {f.name: [(r.get("config") or {}).get(f.name, f.default) for r in runs] for f in config_fields()}


def varying_fields(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The config fields whose values differ among `runs`, in RunConfig order."""
    return [name for name, values in _values(runs).items() if len({repr(v) for v in values}) > 1]


def config_diff(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Fields whose values differ among `runs` (rows, in RunConfig order) x runs (columns)."""
    if not runs:
        return pd.DataFrame()
    values = _values(runs)
    rows = {name: [value_text(v) or "(default)" for v in values[name]] for name in varying_fields(runs)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[run_label(r) for r in runs])


@dataclass
class SeedTable:
    title: str  # e.g. "resnet18 + lars" or "resnet18 + lars, epochs=10"
    context: dict[str, Any]  # the table's fixed settings (TABLE_KEYS plus other differing fields)
    numbers: pd.DataFrame  # subset_size, batch_size, loss_mean, loss_std, accuracy_mean, accuracy_std, n
    display: pd.DataFrame  # the seed's layout: data subset | batch | loss | accuracy, as text


def _fmt(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def seed_tables(runs: Sequence[dict[str, Any]]) -> list[SeedTable]:
    """The seed-layout tables for the runs that have linear-probe results."""
    done = [r for r in runs if r.get("linear_top1") is not None]
    if not done:
        return []
    configs = [{f.name: (r.get("config") or {}).get(f.name, f.default) for f in config_fields()} for r in done]
    # Settings that vary among these runs but are neither table, row nor repeat keys split tables too.
    varying = [f.name for f in config_fields()
               if f.name not in (*TABLE_KEYS, *ROW_KEYS, REPEAT_KEY)
               and len({repr(c[f.name]) for c in configs}) > 1]
    group_keys = [*TABLE_KEYS, *varying]
    records = [{**{k: c[k] for k in (*group_keys, *ROW_KEYS)},
                "loss": r.get("linear_loss"), "accuracy": r.get("linear_top1")} for r, c in zip(done, configs)]
    df = pd.DataFrame.from_records(records)
    # None (all images) cannot be a groupby key next to ints; -1 stands for it and sorts first.
    df["subset_size"] = df["subset_size"].fillna(-1).astype("int64")
    for k in varying:
        df[k] = df[k].map(lambda v: value_text(v) or "default")  # any type (None, floats) groups as text
    tables = []
    for key, part in df.groupby(group_keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        stats = (part.groupby(list(ROW_KEYS), sort=True)
                 .agg(loss_mean=("loss", "mean"), loss_std=("loss", "std"), accuracy_mean=("accuracy", "mean"),
                      accuracy_std=("accuracy", "std"), n=("accuracy", "size"))
                 .reset_index())
        stats["subset_size"] = stats["subset_size"].astype("Int64").where(stats["subset_size"] >= 0, pd.NA)
        context = dict(zip(group_keys, key))
        extra = ", ".join(f"{k}={context[k]}" for k in varying)
        title = f"{context['encoder']} + {context['optimizer']}" + (f", {extra}" if extra else "")
        display = pd.DataFrame({
            "data subset": [("all" if pd.isna(s) else str(s)) for s in stats["subset_size"]],
            "batch": stats["batch_size"].astype(str),
            "loss": [_fmt(m, s, n) for m, s, n in zip(stats["loss_mean"], stats["loss_std"], stats["n"])],
            "accuracy": [_fmt(m, s, n) for m, s, n in zip(stats["accuracy_mean"], stats["accuracy_std"], stats["n"])],
            "seeds": stats["n"].astype(int),
        })
        tables.append(SeedTable(title, context, stats, display))
    return tables


def tables_csv(tables: Sequence[SeedTable]) -> str:
    """All seed tables as one long CSV: the context columns, then the numbers."""
    frames = [t.numbers.assign(**{k: v for k, v in t.context.items()}) for t in tables]
    if not frames:
        return ""
    out = pd.concat(frames, ignore_index=True)
    first = list(tables[0].context)
    return out[[*first, *[c for c in out.columns if c not in first]]].to_csv(index=False)
