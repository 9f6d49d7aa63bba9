"""The launch form's logic, without Streamlit: fields from RunConfig, parsing, grids, errors.

Every field comes from `db.config.config_fields()` (a field added to RunConfig appears in the form
by itself); validation is RunConfig's own plus db.datasets.check_data, and grids go through the same `db.sweep.expand_grid`
as `python -m engine submit --grid`, so the form and the CLI accept and refuse the same things.
What this module adds is only what a form needs: text <-> value, errors attached to the field
they are about, and the data-root fence for typed folders.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from db.config import ConfigError, RunConfig, coerce_field, config_fields, field_optional, lr_rule
from db.datasets import check_data
from db.presets import QUICK_CPU, get_preset
from db.sweep import SweepError, combo_label, expand_grid, parse_grid
from dashboard.data_roots import check_data_dir

GRID_FIELDS = ("encoder", "optimizer", "batch_size", "subset_size", "epochs", "seed")

# Display grouping only; a RunConfig field not listed here still shows up, under "Other".
SECTIONS: dict[str, tuple[str, ...]] = {
    "Data": ("dataset", "data_dir", "subset_size", "image_size", "pretrain_split"),
    "Model": ("encoder", "stem", "projection_dim", "projection_hidden_dim"),
    "Optimisation": ("optimizer", "batch_size", "epochs", "lr", "base_lr", "schedule", "weight_decay",
                     "warmup_epochs", "temperature", "lars_trust_coefficient", "lars_exclude", "lars_clip_lr",
                     "lars_zero_norm"),
    "Augmentation": ("jitter_strength", "augment_backend"),
    "Run": ("seed", "probe", "device", "devices", "sync_batchnorm", "precision", "compile", "eval_every", "knn_k",
            "knn_temperature", "probe_epochs"),
}
# Shown folded away: the baseline experiment never changes them (the presets set several).
ADVANCED = {"pretrain_split", "projection_dim", "projection_hidden_dim", "base_lr", "schedule", "weight_decay",
            "warmup_epochs", "temperature", "lars_trust_coefficient", "lars_exclude", "lars_clip_lr",
            "lars_zero_norm", "augment_backend", "device", "devices", "sync_batchnorm", "precision", "compile",
            "knn_k", "knn_temperature", "eval_every", "probe_epochs"}

GENERAL = ""  # error key for problems that belong to no single field


def sections() -> list[tuple[str, list[dataclasses.Field]]]:
    fields_ = config_fields()
    listed = {name for names in SECTIONS.values() for name in names}
    by_name = {f.name: f for f in fields_}
    out = [(title, [by_name[n] for n in names if n in by_name]) for title, names in SECTIONS.items()]
    other = [f for f in fields_ if f.name not in listed]
    if other:
        out.append(("Other", other))
    return out


LABELS = {"lr": "Learning rate", "data_dir": "Data folder", "knn_k": "kNN k", "knn_temperature": "kNN temperature"}


def label(f: dataclasses.Field) -> str:
    return LABELS.get(f.name) or f.name.replace("_", " ").capitalize()


def value_text(value: Any) -> str:
    """A config value as the form shows it: None is an empty box (meaning the field's default rule)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def default_text(f: dataclasses.Field) -> str:
    return value_text(f.default)


def help_text(f: dataclasses.Field) -> str:
    m = f.metadata
    parts = [m["help"].rstrip(".") + "."]
    if "choices" in m:
        parts.append(f"One of: {', '.join(m['choices'])}.")
    lo, hi, lo_ex = m.get("min"), m.get("max"), m.get("min_exclusive")
    bounds = [f"> {lo_ex:g}" if lo_ex is not None else "", f">= {lo:g}" if lo is not None else "",
              f"<= {hi:g}" if hi is not None else ""]
    if any(bounds):
        parts.append("Allowed: " + " and ".join(b for b in bounds if b) + ".")
    parts.append(f"Default: {default_text(f) or 'empty (see above)'}.")
    return " ".join(parts)


def lr_caption(optimizers: Sequence[str], batch_sizes: Sequence[int]) -> str:
    """The rule an empty learning rate box means, for the optimizer(s) and batch size(s) chosen."""
    rules = []
    for opt in dict.fromkeys(optimizers):
        for b in (dict.fromkeys(batch_sizes) if opt != "adam" else [0]):
            rule = lr_rule(opt, b)
            if rule not in rules:
                rules.append(rule)
    return "Empty = the optimizer's rule: " + "; ".join(rules)


def parse_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


@dataclass
class Plan:
    """What pressing Launch would enqueue, or why it would enqueue nothing."""

    runs: list[tuple[dict[str, Any], RunConfig]] = field(default_factory=list)  # (combination, config)
    grid: list[tuple[str, list[Any]]] = field(default_factory=list)  # the fields that vary
    errors: dict[str, list[str]] = field(default_factory=dict)  # field name (or GENERAL) -> messages

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.runs)

    def error(self, name: str, message: str) -> None:
        msgs = self.errors.setdefault(name, [])
        if message not in msgs:
            msgs.append(message)


def _coerce(plan: Plan, name: str, text: Any) -> tuple[bool, Any]:
    try:
        return True, coerce_field(name, text)
    except ConfigError as e:
        plan.error(e.field, e.message)  # the form shows it under its field: no "field: " prefix
        return False, None


def _grid_values(plan: Plan, name: str, raw: Any) -> list[Any] | None:
    """The values a grid field lists, coerced; None (with an error recorded) when unusable."""
    if isinstance(raw, (list, tuple)):  # a multiselect
        texts = [str(v) for v in raw]
        if not texts:
            plan.error(name, "pick at least one value")
            return None
    else:
        texts = parse_list(str(raw or ""))
        if not texts:
            f = next(f for f in config_fields() if f.name == name)
            if field_optional(f):
                return [None]  # empty = the field's default (e.g. all images), as in single mode
            plan.error(name, "give at least one value (comma-separated for several)")
            return None
        try:
            parse_grid([f"{name}={','.join(texts)}"])  # the CLI's checks: duplicates, empty entries
        except SweepError as e:
            plan.error(name, str(e).replace("--grid ", "", 1))
            return None
    values = []
    for text in texts:
        ok, value = _coerce(plan, name, text)
        if not ok:
            return None
        values.append(value)
    return values


def build_plan(raw: Mapping[str, Any], grid_mode: bool) -> Plan:
    """Turn the form's raw values ({field: text, or list for grid multiselects}) into runs or errors."""
    plan = Plan()
    base: dict[str, Any] = {}
    for f in config_fields():
        value = raw.get(f.name, default_text(f))
        if grid_mode and f.name in GRID_FIELDS:
            values = _grid_values(plan, f.name, value)
            if values is None:
                continue
            if len(values) == 1:
                base[f.name] = values[0]
            else:
                plan.grid.append((f.name, values))
        elif f.name == "data_dir" and str(value or "").strip():
            folder, message = check_data_dir(str(value).strip())
            if message:
                plan.error("data_dir", message)
            else:
                base["data_dir"] = str(folder)
        else:
            ok, coerced = _coerce(plan, f.name, value)
            if ok:
                base[f.name] = coerced
    # Fields that are already wrong take their defaults while the combinations are checked, so that
    # a bad learning rate does not hide, say, a subset smaller than a batch. Their own error stands.
    broken = set(plan.errors)
    for f in config_fields():
        if f.name in broken:
            base[f.name] = f.default

    varying = [name for name, _ in plan.grid]

    defaults = {f.name: f.default for f in config_fields()}
    found: list[tuple[str, str, str]] = []  # (field, message, combination label)
    data_memo: dict = {}  # each data folder is looked at once per form run, not once per combination

    def build(values: dict[str, Any]) -> RunConfig:
        # RunConfig stops at its first error; retry with each offending field reset to its default
        # so that one press of Launch lists every problem, each under its own field.
        trial, first = dict(values), None
        for _ in range(len(defaults)):
            try:
                cfg = RunConfig(**trial)
                problems = check_data(cfg, data_memo)  # the disk, after the values are known to be valid
                if problems:
                    raise problems[0]
            except ConfigError as e:
                first = first or e
                if e.field not in broken:  # a field already flagged keeps its own, more direct error
                    found.append((e.field, e.message, combo_label({k: values[k] for k in varying})))
                if e.field not in trial or trial[e.field] == defaults.get(e.field):
                    break
                trial[e.field] = defaults[e.field]
                continue
            if first is None:
                return cfg
            break
        raise first if first is not None else ConfigError(GENERAL, "invalid configuration")

    try:
        runs = expand_grid(base, plan.grid, build=build)
    except SweepError as e:
        runs = []
        if not plan.errors and not found:  # not about one field (e.g. too many combinations)
            plan.error(GENERAL, str(e))
    _report(plan, found, combos=math.prod(len(values) for _, values in plan.grid))
    plan.runs = [] if plan.errors else runs
    return plan


MAX_MESSAGES_PER_FIELD = 6


def _report(plan: Plan, found: list[tuple[str, str, str]], combos: int) -> None:
    """Attach combination errors to their fields: a message every combination shares is said once,
    without naming combinations; the others name theirs (at most a few, then a count)."""
    by_field: dict[str, dict[str, list[str]]] = {}
    for name, message, combo in found:
        by_field.setdefault(name, {}).setdefault(message, []).append(combo)
    for name, messages in by_field.items():
        lines = []
        for message, where in messages.items():
            if len(where) >= combos or where == [""]:
                lines.append(message)
            else:
                lines.extend(f"{message} (with {w})" for w in where)
        for line in lines[:MAX_MESSAGES_PER_FIELD]:
            plan.error(name, line)
        if len(lines) > MAX_MESSAGES_PER_FIELD:
            plan.error(name, f"... and {len(lines) - MAX_MESSAGES_PER_FIELD} more combinations")


def form_defaults(gpu: bool) -> dict[str, str]:
    """A new form's values: RunConfig's defaults (the full recipe) where a GPU is, else the quick
    CPU preset, so that a CPU-only machine never proposes a run of most of a day."""
    values = {f.name: default_text(f) for f in config_fields()}
    if not gpu:
        values.update(get_preset(QUICK_CPU).values)
    return values


def widget_values_for(config: Mapping[str, Any]) -> dict[str, str]:
    """Single-mode form values reproducing a stored config (for "clone into the launch form")."""
    known = {f.name for f in config_fields()}
    return {name: value_text(value) for name, value in config.items() if name in known}
