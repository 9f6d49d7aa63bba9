"""`python -m dashboard`: safe wherever it is started."""

from __future__ import annotations

import pytest

from dashboard.__main__ import APP, streamlit_command


def test_loopback_by_default_with_allowed_hosts_against_dns_rebinding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMCLR_ALLOWED_HOSTS", raising=False)
    command = streamlit_command({}, ["--theme.base", "dark"])
    assert command[command.index("run") + 1] == str(APP)  # an absolute path: any working directory
    assert command[command.index("--server.address") + 1] == "localhost"
    hosts = {a.split("=", 1)[1] for a in command if a.startswith("--server.allowedHosts=")}
    assert hosts == {"localhost", "127.0.0.1", "::1"}
    assert command[-2:] == ["--theme.base", "dark"]
    # no full garbage collection after every redraw: 39 % of the server's CPU with twenty tabs open
    assert command[command.index("--runner.postScriptGC") + 1] == "false"


def test_no_other_address_without_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboard.__main__ as main

    monkeypatch.setattr(main, "PROJECT_ROOT", main.PROJECT_ROOT / "no-such-folder")  # no secrets.toml
    with pytest.raises(SystemExit, match="refusing to listen on 0.0.0.0 without a password"):
        streamlit_command({"SIMCLR_ADDRESS": "0.0.0.0"}, [])
    command = streamlit_command({"SIMCLR_ADDRESS": "0.0.0.0", "SIMCLR_PASSWORD": "s3cret"}, [])
    assert "--server.allowedHosts=*" in command
