"""Find runs: filter and sort the Runs page by any config field, tag or result, and keep the view
in the URL so that a link restores it.

A filter is a line of clauses `FIELD OP VALUE` (all must hold), e.g.
`optimizer=lars batch_size>=128 linear_top1>0.4 name~base`. OP is = != > >= < <= or ~
(contains). Numbers compare as numbers, the rest as case-insensitive text; `FIELD=none` matches
an unset value. FIELD is any RunConfig field, a result (final_loss, latest_loss, knn_top1,
linear_loss, linear_top1, duration_s) or id, name, status, sweep, ran_on (device used), note.
"""

from __future__ import annotations

import difflib
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import streamlit as st

from db.config import config_fields

RESULTS = ("final_loss", "latest_loss", "knn_top1", "linear_loss", "linear_top1", "duration_s")
META = {"id": "id", "name": "name", "status": "display_status", "sweep": "sweep_id", "ran_on": "device",
        "note": "note"}  # ran_on: the device a worker ran it on (`device` is the config's request)
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "!=": operator.ne, "=": operator.eq, ">": operator.gt, "<": operator.lt,
    "~": lambda a, b: str(b) in str(a),
}
_CLAUSE = re.compile(r"\s*([A-Za-z_][\w/]*)\s*(>=|<=|!=|=|>|<|~)\s*([^\s,;<>=!~][^\s,;]*)\s*[,;]?")

# Session keys of the Runs page's controls (each with a URL parameter, below).
STATUS_FILTER, SWEEP_FILTER = "runs_status_filter", "runs_sweep_filter"
QUERY, TAGS, SORT, DESCENDING = "runs_query", "runs_tags", "runs_sort", "runs_descending"


class FilterError(ValueError):
    pass


def field_names() -> list[str]:
    return [*META, *RESULTS, *(f.name for f in config_fields())]


def value(run: dict[str, Any], name: str) -> Any:
    if name in META:
        return run.get(META[name])
    if name in RESULTS:
        return run.get(name)
    for f in config_fields():
        if f.name == name:
            return (run.get("config") or {}).get(name, f.default)
    raise FilterError(f"unknown field {name!r}")


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    text: str

    def holds(self, run: dict[str, Any]) -> bool:
        got = value(run, self.field)
        if self.text.lower() == "none":
            return (got is None) == (self.op == "=") if self.op in ("=", "!=") else False
        if got is None:
            return self.op == "!="
        try:
            return OPS[self.op](float(got), float(self.text))
        except (TypeError, ValueError):
            if self.op in (">", ">=", "<", "<="):
                return False  # ordering text by a number is meaningless: no match
            return OPS[self.op](str(got).lower(), self.text.lower())


def parse(text: str) -> list[Clause]:
    """The clauses of a filter line; a clear error for anything that is not one."""
    clauses, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _CLAUSE.match(text, pos)
        if not m:
            raise FilterError(f"cannot read {text[pos:].strip()!r}: write FIELD OP VALUE, e.g. batch_size>=128 "
                              "(OP is one of = != > >= < <= ~)")
        name, op, arg = m.groups()
        if name not in field_names():
            close = difflib.get_close_matches(name.lower(), field_names(), n=3)
            raise FilterError(f"unknown field {name!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                           f"; fields: {', '.join(field_names())}"))
        clauses.append(Clause(name, op, arg))
        pos = m.end()
    return clauses


@dataclass(frozen=True)
class View:
    query: str = ""
    tags: tuple[str, ...] = ()
    sort: str = "id"
    descending: bool = True
    clauses: tuple[Clause, ...] = field(default=())


def apply(runs: Sequence[dict[str, Any]], view: View) -> list[dict[str, Any]]:
    """The runs that carry every chosen tag and satisfy every clause, sorted (unset values last)."""
    wanted = set(view.tags)
    kept = [r for r in runs if wanted <= set(r.get("tags") or []) and all(c.holds(r) for c in view.clauses)]

    def key(run: dict[str, Any]) -> tuple:
        v = value(run, view.sort)
        if v is None:
            return (1, 0, "")
        return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (0, 0, str(v).lower())

    present = sorted([r for r in kept if value(r, view.sort) is not None], key=key, reverse=view.descending)
    return present + [r for r in kept if value(r, view.sort) is None]


# ----------------------------------------------------------------------------------- the page
URL_KEYS = {"status": STATUS_FILTER, "sweep": SWEEP_FILTER, "q": QUERY, "tags": TAGS, "sort": SORT,
            "desc": DESCENDING}
_LISTS = {"status", "tags"}


def restore_from_url() -> None:
    """Once per session: a shared link's view (?status=running&q=batch_size>=128&sort=linear_top1...)."""
    state = st.session_state
    if state.get("runs_url_restored"):
        return
    state["runs_url_restored"] = True
    params = st.query_params
    for param, key in URL_KEYS.items():
        if param not in params:
            continue
        raw = params[param]
        if param in _LISTS:
            state[key] = [v for v in raw.split(",") if v]
        elif param == "desc":
            state[key] = raw != "0"
        else:
            state[key] = raw


def write_url() -> None:
    """The current view into the address bar (only what differs from the defaults), for sharing."""
    state = st.session_state
    for param, key in URL_KEYS.items():
        v = state.get(key)
        if param in _LISTS:
            text = ",".join(v or [])
        elif param == "desc":
            text = "" if v in (None, True) else "0"
        else:
            text = "" if v in (None, "", "id") else str(v)
        if text:
            if st.query_params.get(param) != text:
                st.query_params[param] = text
        elif param in st.query_params:
            del st.query_params[param]


def controls(known_tags: Sequence[str]) -> View:
    """The filter line, tag picker and sort order; returns the view (its error shown here)."""
    state = st.session_state
    state[TAGS] = [t for t in state.get(TAGS, []) if t in known_tags]
    if state.get(SORT) not in field_names():
        state[SORT] = "id"
    state.setdefault(DESCENDING, True)
    c1, c2, c3, c4 = st.columns([4, 2, 2, 1])
    query = c1.text_input("Filter", key=QUERY, placeholder="e.g. optimizer=lars batch_size>=128 linear_top1>0.4",
                          help=__doc__.split("\n\n")[1])
    tags = c2.multiselect("Tags (all of)", list(known_tags), key=TAGS)
    sort = c3.selectbox("Sort by", field_names(), key=SORT)
    descending = c4.toggle("desc.", key=DESCENDING, help="sort descending")
    try:
        clauses = tuple(parse(query))
    except FilterError as e:
        st.error(f"Filter not applied: {e}")
        clauses = ()
    return View(query=query, tags=tuple(tags), sort=sort, descending=descending, clauses=clauses)
