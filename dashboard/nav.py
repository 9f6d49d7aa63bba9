"""The dashboard's pages, in one table, and how to move between them.

Pages are files under screens/ (not callables) so that links, st.switch_page and AppTest's
switch_page all address them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import streamlit as st

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to dashboard/, as st.Page and st.switch_page take it
    title: str
    icon: str
    url_path: str


LAUNCH = PageSpec("screens/launch.py", "Launch", ":material/rocket_launch:", "launch")
RUNS = PageSpec("screens/runs.py", "Runs", ":material/table_rows:", "runs")
RUN = PageSpec("screens/run_detail.py", "Run detail", ":material/monitoring:", "run")
COMPARE = PageSpec("screens/compare.py", "Compare", ":material/compare_arrows:", "compare")
WORKERS = PageSpec("screens/workers.py", "Workers", ":material/dns:", "workers")
ALL = (LAUNCH, RUNS, RUN, COMPARE, WORKERS)


def pages() -> list[st.Page]:
    """Every page; Launch is the default, served at "/"."""
    return [st.Page(HERE / spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                    default=spec is LAUNCH) for spec in ALL]


def switch(spec: PageSpec, **query_params: str) -> None:
    st.switch_page(spec.path, query_params=query_params or None)


CLONE_KEY = "launch_clone_config"  # read (once) by screens/launch.py
CLONE_FROM_KEY = "launch_clone_from"  # the cloned run's label, for the form's confirmation


def clone_into_launch(config: dict, label: str = "the run") -> None:
    """Open the launch form pre-filled with `config` (a stored run's), to change and launch again."""
    st.session_state[CLONE_KEY] = dict(config)
    st.session_state[CLONE_FROM_KEY] = label
    switch(LAUNCH)
