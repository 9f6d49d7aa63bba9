"""Shared dashboard plumbing: the database engine, small formatting helpers."""

from __future__ import annotations

import html
import math
from datetime import datetime
from typing import Any, Callable

import streamlit as st
from sqlalchemy import Engine

from db.session import default_url, make_engine


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    # One engine (one connection pool) per server process and URL; every query opens its own
    # short connection from it, so reruns and fragments in many sessions never share a transaction.
    return make_engine(url)


def get_engine() -> Engine:
    """The run database named by SIMCLR_DB (or the default SQLite file), created on first use."""
    return _engine(default_url())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {m:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def run_label(run: dict) -> str:
    return f"#{run['id']} {run['name']}" if run.get("name") else f"#{run['id']}"


_MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+-.!|~$:")


def md_plain(text: str) -> str:
    """`text` escaped so that Streamlit's Markdown shows it literally: run names, tags and notes are
    typed by people, and as Markdown a name like ![x](http://host/img.png) made every viewer's
    browser fetch that URL. Use it wherever such text meets Markdown (labels, subheaders)."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIALS else c for c in text)


def plain_heading(text: str) -> None:
    """A subheader that is text and nothing else: HTML-escaped, so no Markdown (not even the
    autolinking of a bare URL, which escaping for Markdown does not stop) applies to it."""
    st.html(f'<h3 style="margin: 0.5rem 0; font-weight: 600">{html.escape(text)}</h3>')


def prepared_download(key: str, label: str, make: Callable[[], bytes | str], *, file_name: str, mime: str,
                      signature: Any, where: Any = st) -> None:
    """A download button that cannot fail: "Prepare <label>" makes the bytes once, then an ordinary
    st.download_button hands them over.

    Not a deferred callable (data=function): Streamlit forgets those when the page reruns before
    the click (a widget change, a fragment's redraw), and the click then fails with
    "MediaFileStorageError: Deferred file ... not found". Not made on every redraw either: a whole
    curve history or a checkpoint can be tens of MB. `signature` names what the bytes are of; when
    it changes (other runs, another metric) the prepared bytes are dropped.
    """
    state = st.session_state
    held = state.get(key)
    if held is None or held[0] != signature:
        state.pop(key, None)
        if not where.button(f"Prepare {label}", key=f"{key}_prepare"):
            return
        held = state[key] = (signature, make())
    where.download_button(f"Download {label}", data=held[1], file_name=file_name, mime=mime, key=f"{key}_download",
                          on_click="ignore", type="primary")
