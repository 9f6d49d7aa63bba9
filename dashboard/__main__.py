"""`python -m dashboard [streamlit flags]`: serve the dashboard safely from any directory.

Streamlit reads `.streamlit/config.toml` from the current directory only; this entry point does
not depend on it. It listens on SIMCLR_ADDRESS (default localhost) and SIMCLR_PORT (default
8501), refuses to listen beyond loopback without a password, and sets Streamlit's
`server.allowedHosts` so that a loopback server's WebSocket refuses a foreign Host header (DNS
rebinding). `./lab.sh serve` runs this.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Mapping

from dashboard.safety import allowed_hosts, is_loopback
from db.config import PROJECT_ROOT

APP = Path(__file__).resolve().parent / "app.py"


def password_configured(environ: Mapping[str, str]) -> bool:
    if environ.get("SIMCLR_PASSWORD"):
        return True
    secrets = PROJECT_ROOT / ".streamlit" / "secrets.toml"
    try:
        return bool(tomllib.loads(secrets.read_text()).get("password"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def streamlit_command(environ: Mapping[str, str], extra: list[str]) -> list[str]:
    """The `streamlit run` command line; SystemExit with a message when it would be unsafe."""
    address = environ.get("SIMCLR_ADDRESS") or "localhost"
    loopback = is_loopback(address)
    if not loopback and not password_configured(environ):
        raise SystemExit(f"error: refusing to listen on {address} without a password: set SIMCLR_PASSWORD "
                         "(or password in .streamlit/secrets.toml), or leave SIMCLR_ADDRESS unset for localhost")
    # Beyond loopback the password is the guard and the names people use are unknown: any Host.
    hosts = sorted(allowed_hosts()) if loopback else ["*"]
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", address,
            "--server.port", environ.get("SIMCLR_PORT") or "8501", "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
            # Streamlit runs a full gc.collect(2) after every script run, fragment redraws included:
            # profiled with py-spy under 20 open Runs tabs it was 39 % of the server's CPU, the largest
            # single cost (BENCHMARKS.md, twenty tabs). Python's own collector still runs as usual.
            "--runner.postScriptGC", "false",
            *(f"--server.allowedHosts={h}" for h in hosts), *extra]


def main() -> None:
    command = streamlit_command(os.environ, sys.argv[1:])
    os.chdir(PROJECT_ROOT)  # so that .streamlit/ (secrets, client settings) is the project's, too
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
