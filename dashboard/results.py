"""Result tables for Compare: the config diff and the linear-probe results table.

The baseline experiment's table has one row per (data count, batch size) and two columns, the
linear classifier's test loss and top-1 accuracy, for ResNet18 + LARS. Here the rows are keyed by
the fields that vary among the chosen runs (by default all of them; the reader may pick fewer),
so a subset x batch sweep and an epochs x batch sweep both get that layout. One table per encoder
+ optimizer and per any other setting that varies but is not a row key (so, say, 10-epoch and
100-epoch runs never share a cell); runs that differ only in their seed share a cell as
mean +- sample standard deviation (ddof=1). Whenever a table has the baseline's layout, its
published numbers (db/baseline_experiment.json) stand beside ours with the differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from db.baseline import DATA_COUNT_FIELDS, baseline_table
from db.config import config_fields
from dashboard.common import run_label
from dashboard.launch_form import value_text

TABLE_KEYS = ("encoder", "optimizer")  # one table per combination of these
REPEAT_KEY = "seed"  # runs differing only here are repeats of one cell
PROBE_KEY = "probe"  # never a row key: results of different probes are not comparable
# Preferred order of row keys: the baseline's "data count" readings, then the batch size.
ROW_KEY_ORDER = (*DATA_COUNT_FIELDS, "batch_size")
ROW_LABELS = {"subset_size": "data subset", "batch_size": "batch", "epochs": "epochs"}


def _configs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's config, every field present (the default where a stored config lacks it)."""
    return [{f.name: (r.get("config") or {}).get(f.name, f.default) for f in config_fields()} for r in runs]


def _values(runs: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Config field -> its value in each run."""
    configs = _configs(runs)
    return {f.name: [c[f.name] for c in configs] for f in config_fields()}


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


def _with_results(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("linear_top1") is not None]


def row_key_choices(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The fields a results table may be keyed by: those that vary, except the table, repeat and probe keys."""
    choices = [k for k in varying_fields(_with_results(runs)) if k not in (*TABLE_KEYS, REPEAT_KEY, PROBE_KEY)]
    return sorted(choices, key=lambda k: (ROW_KEY_ORDER.index(k) if k in ROW_KEY_ORDER else len(ROW_KEY_ORDER)))


def default_row_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Every field that varies (for a sweep: its grid fields); the batch size when nothing does."""
    return row_key_choices(runs) or ["batch_size"]


def probes_used(runs: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({str(c[PROBE_KEY]) for c in _configs(_with_results(runs))})


@dataclass
class ResultTable:
    title: str  # e.g. "resnet18 + lars, probe lbfgs" or "resnet18 + lars, probe lbfgs, epochs=10"
    context: dict[str, Any]  # the table's fixed settings (TABLE_KEYS, the probe, other differing fields)
    row_keys: list[str]
    numbers: pd.DataFrame  # row keys, loss_mean, loss_std, accuracy_mean, accuracy_std, n (+ baseline_*)
    display: pd.DataFrame  # row keys (as text), loss, accuracy, seeds (+ baseline and differences), as text
    baseline: bool  # the baseline's published numbers stand beside ours


def _fmt(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def _signed(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.4f}"


def baseline_layout(context: dict[str, Any], row_keys: Sequence[str], stats: pd.DataFrame) -> str | None:
    """The data-count field when a table has the baseline's layout (ResNet18 + LARS, rows
    (subset_size or epochs) x batch_size, every value within the published grid), else None."""
    table = baseline_table()
    if context.get("encoder") != table.encoder or context.get("optimizer") != table.optimizer:
        return None
    if len(row_keys) != 2 or row_keys[1] != "batch_size" or row_keys[0] not in DATA_COUNT_FIELDS:
        return None
    data = row_keys[0]
    cells = set(table.cells)
    try:
        keys = [(int(d), int(b)) for d, b in zip(stats[data], stats["batch_size"])]
    except (TypeError, ValueError):  # a text value: not the baseline's grid
        return None
    return data if all(k in cells for k in keys) else None


def result_tables(runs: Sequence[dict[str, Any]], row_keys: Sequence[str] | None = None) -> list[ResultTable]:
    """The results tables for the runs that have linear-probe results, rows keyed by `row_keys`
    (default: `default_row_keys`)."""
    done = _with_results(runs)
    if not done:
        return []
    row_keys = list(row_keys) if row_keys else default_row_keys(done)
    configs = _configs(done)
    # Settings that vary but are neither table, row nor repeat keys split tables too.
    varying = [k for k in varying_fields(done) if k not in (*TABLE_KEYS, *row_keys, REPEAT_KEY, PROBE_KEY)]
    group_keys = [*TABLE_KEYS, PROBE_KEY, *varying]
    records = [{**{k: c[k] for k in (*group_keys, *row_keys)},
                "loss": r.get("linear_loss"), "accuracy": r.get("linear_top1")} for r, c in zip(done, configs)]
    df = pd.DataFrame.from_records(records)
    # None (e.g. all images) cannot be a groupby key next to numbers: MISSING stands for it in a
    # numeric column (and sorts first); a column of other values groups as text.
    for k in row_keys:
        numeric = df[k].map(lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))).all()
        df[k] = df[k].fillna(MISSING) if numeric else df[k].map(lambda v: value_text(v) or "default")
    for k in varying + [PROBE_KEY]:
        df[k] = df[k].map(lambda v: value_text(v) or "default")  # any type (None, floats) groups as text
    tables = []
    for key, part in df.groupby(group_keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        stats = (part.groupby(row_keys, sort=True)
                 .agg(loss_mean=("loss", "mean"), loss_std=("loss", "std"), accuracy_mean=("accuracy", "mean"),
                      accuracy_std=("accuracy", "std"), n=("accuracy", "size"))
                 .reset_index())
        context = dict(zip(group_keys, key))
        extra = ", ".join(f"{k}={context[k]}" for k in varying)
        title = f"{context['encoder']} + {context['optimizer']}, probe {context[PROBE_KEY]}" + (
            f", {extra}" if extra else "")
        display = pd.DataFrame({ROW_LABELS.get(k, k): stats[k].map(lambda v, k=k: _row_text(k, v))
                                for k in row_keys})
        display["loss"] = [_fmt(m, s, n) for m, s, n in zip(stats["loss_mean"], stats["loss_std"], stats["n"])]
        display["accuracy"] = [_fmt(m, s, n) for m, s, n in
                               zip(stats["accuracy_mean"], stats["accuracy_std"], stats["n"])]
        display["seeds"] = stats["n"].astype(int)
        data_field = baseline_layout(context, row_keys, stats)
        if data_field:
            _add_baseline(stats, display, data_field)
        for k in row_keys:  # MISSING back to None in the numbers (and the CSV)
            if pd.api.types.is_numeric_dtype(stats[k]):
                stats[k] = stats[k].astype("object").where(stats[k] != MISSING, None)
        tables.append(ResultTable(title, context, row_keys, stats, display, baseline=data_field is not None))
    return tables


MISSING = -1  # a None (the field's default) in a numeric row key, while grouping


def _row_text(name: str, value: Any) -> str:
    if value is None or value == MISSING:
        return "all" if name == "subset_size" else "default"
    return value_text(value)


def _add_baseline(stats: pd.DataFrame, display: pd.DataFrame, data_field: str) -> None:
    """The baseline's published loss and accuracy for each row, and ours minus theirs."""
    cells = baseline_table().cells
    published = [cells[(int(d), int(b))] for d, b in zip(stats[data_field], stats["batch_size"])]
    stats["baseline_loss"] = [loss for loss, _ in published]
    stats["baseline_accuracy"] = [acc for _, acc in published]
    stats["loss_difference"] = stats["loss_mean"] - stats["baseline_loss"]
    stats["accuracy_difference"] = stats["accuracy_mean"] - stats["baseline_accuracy"]
    display["baseline loss"] = stats["baseline_loss"].map(lambda v: f"{v:.4f}")
    display["baseline accuracy"] = stats["baseline_accuracy"].map(lambda v: f"{v:.4f}")
    display["Δ loss (ours - baseline)"] = stats["loss_difference"].map(_signed)
    display["Δ accuracy (ours - baseline)"] = stats["accuracy_difference"].map(_signed)


def tables_csv(tables: Sequence[ResultTable]) -> str:
    """All results tables as one long CSV: the context columns, then the numbers."""
    frames = [t.numbers.assign(**{k: v for k, v in t.context.items()}) for t in tables]
    if not frames:
        return ""
    out = pd.concat(frames, ignore_index=True)
    first = list(tables[0].context)
    return out[[*first, *[c for c in out.columns if c not in first]]].to_csv(index=False)
