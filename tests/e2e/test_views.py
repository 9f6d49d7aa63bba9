"""End to end, in headless Chromium, against `./lab.sh serve`: the views issue 11 added.

A tiny run goes through the real local worker and trainer (with a finished sibling in its sweep);
then, as a person would:
- Workers lists the local worker (this host, alive) with its devices and slots;
- a finished run's page shows the nearest-neighbour grids (trained and untrained encoder) and the
  feature map, the encoder download, and its name, tags and note as plain text (a name written as
  a Markdown image makes the browser fetch nothing);
- Runs restores a filtered, sorted view from a link; Compare draws the sweep analysis.
Screenshots of each go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import socket

import pytest
from playwright.sync_api import expect

from sqlalchemy import update

from db.annotations import set_note, update_tags
from db.models import runs
from db.queries import create_runs, get_run
from db.session import make_engine, write_tx
from db.status import CANCELLED, COMPLETED, QUEUED, transition
from tests.conftest import tiny_config
from tests.e2e.conftest import SCREENSHOTS, Server
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

UI_TIMEOUT_MS = 30_000
RUN_TIMEOUT_S = 300
TRAP = "http://127.0.0.1:9/trap.png"  # nothing listens there; a fetch of it is what must not happen


def _shot(page, name: str) -> None:  # noqa: ANN001
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_workers_page_run_insights_and_shareable_views(server: Server, browser_page) -> None:  # noqa: ANN001
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 3000})  # the pages scroll inside; show them whole
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    engine = make_engine(server.db_url)
    ids = create_runs(engine, [tiny_config(batch_size=b, epochs=2) for b in (16, 32)],
                      names=[f"![x]({TRAP})", "plain"], sweep_id="sweep-e2e")
    # The sweep's second run is marked done at once, with results (sweep analysis needs two runs):
    # one real run through the worker is what this test is about, and each costs a minute on CI.
    with write_tx(engine) as conn:
        transition(conn, ids[1], CANCELLED, expect=QUEUED)
        conn.execute(update(runs).where(runs.c.id == ids[1]).values(status=COMPLETED, linear_top1=0.2, knn_top1=0.2,
                                                                     linear_loss=2.2, final_loss=4.0))
    update_tags(engine, ids[0], add=["baseline"])
    set_note(engine, ids[0], "**not bold** see [link](http://127.0.0.1:9/)")

    # Workers: the local worker the server started, before any run page is opened.
    page.goto(f"{server.url}/workers")
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_contain_text(socket.gethostname(), timeout=UI_TIMEOUT_MS)
    expect(table).to_contain_text("alive")
    expect(page.get_by_text("Queue (", exact=False)).to_be_visible()
    _shot(page, "views-01-workers")

    wait_until(lambda: get_run(engine, ids[0])["status"] in ("completed", "failed"), RUN_TIMEOUT_S,
               f"run {ids[0]} to finish")
    assert get_run(engine, ids[0])["status"] == "completed", get_run(engine, ids[0])["error"]

    page.goto(f"{server.url}/run?run={ids[0]}")
    expect(page.get_by_text("What the encoder learned")).to_be_visible(timeout=UI_TIMEOUT_MS)
    grids = page.get_by_test_id("stImage")
    expect(grids).to_have_count(2, timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Untrained encoder (random init, same seed)", exact=False)).to_be_visible()
    expect(grids.first.locator("img")).to_have_js_property("complete", True)
    assert grids.first.locator("img").evaluate("i => i.naturalWidth") > 300  # a grid, not an icon
    expect(page.get_by_text("principal components", exact=False).first).to_be_attached()
    # Large files download in two clicks: "Prepare" reads the file, then the download button holds its bytes.
    page.get_by_role("button", name="Prepare encoder (torchvision state dict)").click()
    expect(page.get_by_role("button", name="Download encoder (torchvision state dict)")).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text(f"![x]({TRAP})", exact=False).first).to_be_visible()  # the name, literally
    expect(page.get_by_text("**not bold**", exact=False).first).to_be_visible()
    expect(page.get_by_text("Tags: baseline")).to_be_visible()
    _shot(page, "views-02-run-insights")
    feature_map = page.get_by_test_id("stPlotlyChart").filter(has_text="principal components")
    feature_map.scroll_into_view_if_needed()
    feature_map.screenshot(path=str(SCREENSHOTS / "views-02b-feature-map.png"))

    page.goto(f"{server.url}/runs?q=batch_size%3E%3D16&tags=baseline&sort=linear_top1")
    expect(page.get_by_label("Filter", exact=True)).to_have_value("batch_size>=16", timeout=UI_TIMEOUT_MS)
    _shot(page, "views-03-runs-filtered")

    page.goto(f"{server.url}/compare?sweep=sweep-e2e&colour=linear_top1")
    expect(page.get_by_text("Sweep analysis")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator(".js-plotly-plot .parcoords").first).to_be_attached(timeout=UI_TIMEOUT_MS)
    _shot(page, "views-04-compare-sweep-analysis")
    assert not [u for u in fetched if u.startswith("http://127.0.0.1:9")], "a run's name or note was fetched"
