"""Command-line flags derived from RunConfig: one flag per field, shared by `train` and `submit`."""

from __future__ import annotations

import argparse
from typing import Any

from db.config import ConfigError, RunConfig, config_fields, config_from_text, field_optional, field_type
from db.datasets import check_data


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add --<field> for every RunConfig field. Values stay text here; RunConfig validates them."""
    group = parser.add_argument_group("run configuration")
    defaults = RunConfig.__dataclass_fields__
    for f in config_fields():
        m = f.metadata
        default = defaults[f.name].default
        extra = f" (one of: {', '.join(m['choices'])})" if "choices" in m else ""
        none_word = " or 'none'" if field_optional(f) else ""
        group.add_argument(flag_name(f.name), dest=f.name, default=None, metavar=field_type(f).__name__.upper(),
                           help=f"{m['help']}{extra}{none_word}; default {default}")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line, as text."""
    return {f.name: getattr(args, f.name) for f in config_fields() if getattr(args, f.name, None) is not None}


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
