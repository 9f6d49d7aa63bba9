"""End to end, in headless Chromium, against the app started as the README starts it.

Launch tiny runs from the form, watch a loss curve gain points while its run trains (the real local
worker and trainer), cancel that run mid-training, and read a finished run in Compare's seed-layout
table.
Screenshots of each step go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
import time
from typing import Callable

import pytest
from sqlalchemy import select

from db.models import runs
from db.session import make_engine
from tests.e2e.conftest import SCREENSHOTS, Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

# Tiny on purpose: 16 px synthetic images, imagenet stem, 10 steps per epoch.
TINY = {"Image size": "16", "Batch size": "32", "Subset size": "320", "Epochs": "5"}
TINY_ADVANCED = {"Projection dim": "16", "Eval every": "5", "kNN k": "10"}
RUN_TIMEOUT_S = 300  # a run process starts, imports torch, trains; generous for a loaded CI machine


def _wait(predicate: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.5) -> object:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _shot(page, name: str) -> None:  # noqa: ANN001
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _settle(page) -> None:  # noqa: ANN001
    """Let the rerun a widget change started finish before the next change."""
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"] [data-testid=\"stStatusWidgetRunningIcon\"]')",
                           timeout=30_000)


def _type(page, label: str, value: str) -> None:  # noqa: ANN001
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    _settle(page)


def _choose(page, label: str, option: str) -> None:  # noqa: ANN001
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first
    shown = [box.inner_text(), *(i.input_value() for i in box.locator("input").all())]
    if any(option in text.splitlines() for text in shown):
        return  # already chosen (the form keeps its values)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    _settle(page)


def _launch(page, epochs: str) -> int:  # noqa: ANN001
    """Fill the form with the tiny run (`epochs` epochs), press Launch, return the queued run's id."""
    _choose(page, "Dataset", "synthetic")
    _choose(page, "Stem", "imagenet")
    for label, value in {**TINY, "Epochs": epochs}.items():
        _type(page, label, value)
    advanced = page.get_by_test_id("stExpander").filter(has_text="Advanced settings")
    if not advanced.get_by_label("Eval every", exact=True).is_visible():
        advanced.get_by_text("Advanced settings").click()
    for label, value in TINY_ADVANCED.items():
        _type(page, label, value)
    assert page.get_by_test_id("stAlertContentError").count() == 0, page.get_by_test_id("stAlertContentError").all_inner_texts()
    page.get_by_role("button", name="Launch", exact=True).click()
    message = page.get_by_text(re.compile(r"Queued run \d+")).inner_text()
    _settle(page)
    return int(re.search(r"Queued run (\d+)", message).group(1))


def _status(server: Server, run_id: int) -> str:
    engine = make_engine(server.db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar_one()
    finally:
        engine.dispose()


def _points(page, run_id: int) -> int:  # noqa: ANN001
    """Points of run `run_id`'s trace in the loss chart, as plotly drew it (its decoded traces
    live on the chart's div as _fullData)."""
    return page.evaluate(
        """(label) => {
            let most = 0;
            for (const gd of document.querySelectorAll('.js-plotly-plot')) {
                const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
                if (!title.includes('NT-Xent loss')) continue;
                for (const t of gd._fullData || [])
                    if (t.name === label || String(t.name).startsWith(label + ' ')) most = Math.max(most, t.x ? t.x.length : 0);
            }
            return most;
        }""", f"#{run_id}")


def test_launch_watch_cancel_compare(server: Server, browser_page) -> None:  # noqa: ANN001
    page = browser_page
    page.goto(server.url)
    page.get_by_label("Batch size", exact=True).wait_for()
    _shot(page, "01-launch-form")

    # Two runs from the form. The local worker has one slot on the CPU: the short one trains first,
    # then the long one, which is watched and cancelled while it trains (it can never finish
    # before the test has seen its curve grow, however fast the machine).
    short = _launch(page, epochs="5")
    _shot(page, "02-launched")
    long = _launch(page, epochs="500")
    _wait(lambda: _status(server, short) in ("completed", "failed"), RUN_TIMEOUT_S, f"run {short} to finish",
          every_s=2)
    assert _status(server, short) == "completed", server.log.read_text()[-3000:]

    # Runs: the running run's loss curve is drawn without selecting it, and grows as it trains.
    page.get_by_test_id("stSidebarNav").get_by_text("Runs", exact=True).click()
    first = _wait(lambda: _points(page, long), RUN_TIMEOUT_S, f"run {long}'s first loss points")
    _shot(page, "03-runs-live")
    _wait(lambda: _points(page, long) > first, 120, f"run {long}'s loss curve to gain points", every_s=0.25)
    _shot(page, "04-runs-more-points")

    # Cancel it from its detail page (deep link): it stops at its next step and ends cancelled.
    page.goto(f"{server.url}/run?run={long}")
    page.get_by_role("button", name="Cancel", exact=True).click()
    _wait(lambda: _status(server, long) == "cancelled", 120, f"run {long} to be cancelled")
    page.reload()
    page.get_by_text(re.compile(r"Status:\s*cancelled")).wait_for()
    _shot(page, "05-cancelled")

    # Compare: the finished run in the seed experiment's layout.
    page.goto(f"{server.url}/compare?runs={short}")
    table = page.get_by_test_id("stTable").first
    table.wait_for()
    _shot(page, "06-compare")
    header = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    cells = [c.strip() for c in table.locator("tbody tr").first.locator("th, td").all_inner_texts()]
    row = dict(zip(header, cells))
    assert row["data subset"] == "320" and row["batch"] == "32", row
    assert 0.0 <= float(row["accuracy"].split()[0]) <= 1.0 and float(row["loss"].split()[0]) >= 0.0, row
