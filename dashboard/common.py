"""Shared dashboard plumbing: the database engine, small formatting helpers."""

from __future__ import annotations

import math
import re
from datetime import datetime

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


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def plain(text: object) -> str:
    """`text` escaped for Streamlit's Markdown, so that it shows as typed: a run name or note such as
    `![x](http://host/p.png)` must not make every viewer's browser fetch that image."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
