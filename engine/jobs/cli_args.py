"""Command-line flags derived from RunConfig: one flag per field, shared by `train` and `submit`."""

from __future__ import annotations

import argparse
from typing import Any

from db.config import ConfigError, RunConfig, config_fields, config_from_text, field_optional, field_type
from db.datasets import check_data
from db.presets import PRESETS, combine
from db.sweep import parse_grid


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add --<field> for every RunConfig field. Values stay text here; RunConfig validates them."""
    group = parser.add_argument_group("run configuration")
    defaults = RunConfig.__dataclass_fields__
    for f in config_fields():
        m = f.metadata
        default = defaults[f.name].default
        allowed = f"one of: {', '.join(m['choices'])}" if "choices" in m else value_range(m)
        if field_optional(f):
            allowed = f"{allowed} or 'none'" if allowed else "or 'none'"
        parts = [m["help"], allowed, f"default {'none' if default is None else default}"]
        # argparse treats % in help as a format character.
        text = "; ".join(p for p in parts if p).replace("%", "%%")
        group.add_argument(flag_name(f.name), dest=f.name, default=None, metavar=field_type(f).__name__.upper(),
                           help=text)
    group.add_argument("--preset", action="append", default=[], choices=list(PRESETS), metavar="NAME",
                       help="start from a named preset (repeatable: applied in order; flags win over presets): "
                            + "; ".join(f"{p.name}: {p.label}" for p in PRESETS.values()).replace("%", "%%"))


def value_range(metadata: dict[str, Any]) -> str:
    """The allowed range from a field's metadata, e.g. "1 <= x <= 8192", "0.0 < x <= 10.0", "x >= 1"."""
    if "min_exclusive" in metadata:
        low, low_op = metadata["min_exclusive"], "<"
    elif "min" in metadata:
        low, low_op = metadata["min"], "<="
    else:
        low, low_op = None, ""
    high = metadata.get("max")
    if low is None:
        return "" if high is None else f"x <= {high}"
    if high is None:
        return f"x {low_op.replace('<', '>')} {low}"
    return f"{low} {low_op} x <= {high}"


def explicit_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags on the command line, as text."""
    return {f.name: getattr(args, f.name) for f in config_fields() if getattr(args, f.name, None) is not None}


def config_request(args: argparse.Namespace) -> tuple[dict[str, Any], list[tuple[str, list[str]]]]:
    """(single values, grid) asked for by presets, flags and --grid: a flag or a --grid for a field
    replaces what a preset says about it."""
    preset_values, preset_grid = combine(getattr(args, "preset", None) or [])
    flags = explicit_flags(args)
    grid = parse_grid(getattr(args, "grid", None) or [])
    given = set(flags) | {k for k, _ in grid}
    base = {**{k: v for k, v in preset_values.items() if k not in given}, **flags}
    grid += [(k, v) for k, v in preset_grid.items() if k not in given]
    return base, grid


def config_from_values(values: dict[str, Any], data_memo: dict | None = None) -> RunConfig:
    """A RunConfig from text values (flags, grid entries), its data checked (db.datasets.check_data:
    pass one `data_memo` dict for all combinations of a grid); errors name the field and its flag."""
    try:
        cfg = config_from_text(values)
        problems = check_data(cfg, data_memo)
        if problems:
            raise problems[0]
        return cfg
    except ConfigError as e:
        raise ConfigError(e.field, f"{e.message} (flag {flag_name(e.field)})") from None
