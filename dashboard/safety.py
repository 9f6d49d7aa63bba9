"""Who may talk to the dashboard: the checks every page passes before it draws anything.

Streamlit reads `.streamlit/config.toml` from the current directory only, so a bare
`streamlit run /path/to/dashboard/app.py` started elsewhere listens on every interface with none
of the project's settings. The app cannot change where the server listens once it runs, but every
byte of data it serves goes through this script, so it refuses to draw anything when:

- the server listens beyond loopback (or on all interfaces, Streamlit's default) and no password
  is set: anyone on the network would see and control every run;
- a loopback-only server is asked for a host name that is not a loopback name: that is a DNS
  rebinding attack (a web page on attacker.example whose name now resolves to 127.0.0.1), since a
  browser on this machine only ever asks for localhost or 127.0.0.1. Names of a reverse proxy
  go in SIMCLR_ALLOWED_HOSTS. Streamlit's own `server.allowedHosts` (set by ./lab.sh serve,
  `python -m dashboard` and .streamlit/config.toml) closes the WebSocket itself when it is set;
  this check covers the servers started without it.
"""

from __future__ import annotations

import ipaddress
import os

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(address: str | None) -> bool:
    """True for localhost and loopback IPs; False for unset (Streamlit then listens everywhere)."""
    if not address:
        return False
    name = address.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The host of a Host header, without its port: "localhost:8501" -> "localhost", "[::1]:8501" -> "::1"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts() -> set[str]:
    extra = {h.strip().lower() for h in os.environ.get("SIMCLR_ALLOWED_HOSTS", "").split(",") if h.strip()}
    return {*LOOPBACK_NAMES, *extra}


def refusal(address: str | None, password_set: bool, host_header: str | None) -> str | None:
    """Why this request must not be served, or None when it may be."""
    if not is_loopback(address) and not password_set:
        where = address or "every network interface"
        return (f"This dashboard listens on {where} without a password, so it shows nothing. Start it with "
                "`./lab.sh serve` or `python -m dashboard` (localhost only), or set SIMCLR_PASSWORD before "
                "listening on other addresses.")
    if is_loopback(address) and host_header:
        host = host_name(host_header)
        allowed = allowed_hosts()
        if "*" not in allowed and host not in allowed and not is_loopback(host):
            return (f"Refused: this localhost-only dashboard was asked for host {host!r}, which is how a DNS "
                    "rebinding attack looks. If you reach it through that name on purpose (a proxy), add it to "
                    "SIMCLR_ALLOWED_HOSTS.")
    return None
