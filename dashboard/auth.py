"""Optional password gate for every page.

Set SIMCLR_PASSWORD (or `password` in .streamlit/secrets.toml) and every page asks for it once per
browser session. Unset, the dashboard is open, which is safe only because it listens on localhost
by default.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

SESSION_KEY = "authenticated"


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


def check(candidate: str) -> bool:
    password = configured_password()
    # compare_digest: the time taken does not reveal how many leading characters were right
    return password is not None and hmac.compare_digest(candidate.encode(), password.encode())


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
