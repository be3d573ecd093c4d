"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright), served
by a real uvicorn server over simulated data: the charts are drawn with that data."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from offerloop import ManualClock, Offerloop, load_settings
from offerloop.serving import create_app
from offerloop.sim._demo import DEMO_START, DemoConfig, run_demo

pytestmark = pytest.mark.slow  # real processes or long scenarios

ROOT = Path(__file__).parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
DAYS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path_factory.mktemp("dash") / "d"),
        canary_min_decisions=50,
        # the broken canary is judged against a release refreshed every few hours; this test is
        # about the chart, so the rollback is made easy to reach in 4 small days (500 players:
        # seed 3 rolls it back on day 3)
        guard_confidence=0.6,
    )
    run_demo(settings, DemoConfig(days=DAYS, players=500, seed=3, broken_day=0, report=""))
    system = Offerloop(settings, ManualClock(DEMO_START + DAYS * 86400.0))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(system), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    for i in range(20):  # some live decisions, so the latency chart has data
        httpx.post(f"{base}/v1/decide", json={"player_id": f"p{i}"}, timeout=5).raise_for_status()
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        system.close()


def test_dashboard_draws_the_data_in_a_real_browser(base_url: str) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does)")
    revenue = httpx.get(f"{base_url}/v1/monitoring/revenue", timeout=30).json()
    drift = httpx.get(f"{base_url}/v1/monitoring/drift", timeout=30).json()
    assert revenue["series"], "the simulation produced no matured decisions"
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1400})
            page.goto(f"{base_url}/dashboard?refresh=0", wait_until="load")
            assert page.title() == "offerloop · spring_sale"
            points = page.locator("#revenue-chart circle.point")
            assert points.count() == len(revenue["series"])
            drawn = sorted(
                (el.get_attribute("data-version"), round(float(el.get_attribute("data-value")), 6))
                for el in points.all()
            )
            expected = sorted(
                (p["version"], round(p["revenue_per_decision"], 6)) for p in revenue["series"]
            )
            assert drawn == expected
            lines = page.locator("#revenue-chart polyline.series")
            assert {el.get_attribute("data-version") for el in lines.all()} == {
                p["version"] for p in revenue["series"]
            }
            # the forced broken canary and its rollback are marked on the chart
            kinds = {el.get_attribute("data-kind") for el in page.locator("line.marker").all()}
            assert {"canary", "rollback"} <= kinds
            bars = page.locator("#drift-chart rect.bar")
            with_data = [f for f in drift["features"] if f["psi"] is not None]
            assert bars.count() == len(with_data) + (drift["offers"]["psi"] is not None)
            assert page.locator("#latency-chart rect.bar").count() == 6
            box = page.locator("#revenue-chart").bounding_box()
            assert box is not None
            assert box["width"] > 300  # laid out, not collapsed
            assert box["height"] > 100
            page.screenshot(path=str(out / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (out / "dashboard.png").stat().st_size > 10_000
