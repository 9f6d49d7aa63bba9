"""Optional password gate for every page.

Set SIMCLR_PASSWORD (or `password` in .streamlit/secrets.toml) and every page asks for it once per
browser session. Unset, the dashboard is open, which is safe only because it listens on localhost
by default.
"""

from __future__ import annotations

import hmac
import os
import threading
import time

import streamlit as st

SESSION_KEY = "authenticated"
# Wrong guesses are slowed down for the whole server, not per session (a script opens as many
# sessions as it likes): one guess is checked at a time, and each wrong one holds the gate for a
# delay that doubles every GUESSES_PER_STEP consecutive failures, up to MAX_DELAY_S.
BASE_DELAY_S, MAX_DELAY_S, GUESSES_PER_STEP = 1.0, 30.0, 5
_GATE = threading.Lock()
_failures = 0


def configured_password() -> str | None:
    env = os.environ.get("SIMCLR_PASSWORD")
    if env:
        return env
    try:
        value = st.secrets.get("password")
    except Exception:  # no secrets file at all: Streamlit raises rather than returning nothing
        return None
    return str(value) if value else None


def is_authenticated() -> bool:
    password = configured_password()
    return password is None or bool(st.session_state.get(SESSION_KEY))


def failure_delay(failures: int) -> float:
    doublings = min(16, (failures - 1) // GUESSES_PER_STEP)  # capped: 2 ** huge overflows a float
    return min(MAX_DELAY_S, BASE_DELAY_S * 2 ** doublings)


def check(candidate: str) -> bool:
    global _failures
    password = configured_password()
    with _GATE:
        # compare_digest: the time taken does not reveal how many leading characters were right
        ok = password is not None and hmac.compare_digest(candidate.encode(), password.encode())
        if ok:
            _failures = 0
        else:
            _failures += 1
            time.sleep(failure_delay(_failures))  # inside the lock: parallel guesses queue up behind it
    return ok


def sign_in_page() -> None:
    """Drawn instead of any page until the right password is given."""
    st.title("SimCLR Lab")
    with st.form("sign_in"):
        candidate = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if check(candidate):
            st.session_state[SESSION_KEY] = True
            st.rerun()
        st.error("Wrong password.")
