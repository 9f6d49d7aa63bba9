"""The optional password gates every page, from the environment or Streamlit secrets."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP, TIMEOUT_S
from tests.dashboard.dash_helpers import add_run, texts


def _start(**query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.query_params.update(query)
    return at


def _sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="sign_in_password").set_value(password)
    return at.button[0].click().run()


@pytest.mark.parametrize("page", ["launch", "runs", "run_detail", "compare"])
def test_every_page_asks_for_the_password(db, monkeypatch: pytest.MonkeyPatch, page: str) -> None:  # noqa: ANN001
    monkeypatch.setenv("SIMCLR_PASSWORD", "s3cret")
    at = _start().run()
    at.switch_page(f"screens/{page}.py").run()
    assert [t.key for t in at.text_input] == ["sign_in_password"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.dataframe and not at.get("plotly_chart") and not at.selectbox


def test_wrong_then_right_password(db, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("SIMCLR_PASSWORD", "s3cret")
    at = _sign_in(_start().run(), "guess")
    assert "Wrong password." in texts(at, "error")
    assert at.text_input(key="sign_in_password")
    at = _sign_in(at, "s3cret")
    assert at.text_input(key="lf_batch_size")  # the Launch page


def test_password_from_streamlit_secrets_and_deep_link_survives(db) -> None:  # noqa: ANN001
    run = add_run(db, name="linked")
    at = _start(run=str(run))
    at.secrets["password"] = "from-secrets"
    at.run()
    assert [t.key for t in at.text_input] == ["sign_in_password"]
    at = _sign_in(at, "from-secrets")
    assert any("linked" in h.proto.body for h in at.get("html"))  # Run detail of that run (its plain heading)


def test_no_password_means_no_gate(app) -> None:  # noqa: ANN001
    at = app()
    assert not at.text_input(key="lf_batch_size").disabled
    assert "sign_in_password" not in [t.key for t in at.text_input]


def test_wrong_guesses_are_slowed_down_for_the_whole_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from dashboard import auth

    monkeypatch.setenv("SIMCLR_PASSWORD", "s3cret")
    monkeypatch.setattr(auth, "_failures", 0)
    slept: list[float] = []
    monkeypatch.setattr(auth.time, "sleep", slept.append)
    threads = [threading.Thread(target=auth.check, args=(f"guess{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slept == [1.0] * 5 + [2.0] * 5 + [4.0] * 2  # 12 wrong guesses cost 22 s, from any number of sessions
    assert auth.check("s3cret") and auth._failures == 0
    assert auth.failure_delay(10_000) == auth.MAX_DELAY_S


@pytest.mark.parametrize("address, password, host, refused", [
    (None, False, "localhost:8501", "without a password"),  # bare `streamlit run` from elsewhere: all interfaces
    ("0.0.0.0", False, "10.0.0.5:8501", "without a password"),
    ("0.0.0.0", True, "10.0.0.5:8501", None),
    ("localhost", False, "localhost:8501", None),
    ("127.0.0.1", False, "[::1]:8501", None),
    ("localhost", False, "attacker.example:8501", "DNS rebinding"),
])
def test_who_may_be_served(address: str | None, password: bool, host: str, refused: str | None) -> None:
    from dashboard.safety import refusal

    got = refusal(address, password, host)
    assert (got is None) if refused is None else (refused in got)


def test_a_server_on_all_interfaces_without_password_draws_nothing(db, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from streamlit import config

    add_run(db, name="private")
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = _start().run()
    finally:
        config.set_option("server.address", before)
    assert any("without a password" in e for e in texts(at, "error"))
    assert not at.dataframe and not at.text_input and not at.selectbox
