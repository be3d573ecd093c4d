"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright), served
by a real uvicorn server over simulated data: the charts are drawn with that data."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import zlib
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


def _pixels(png: bytes) -> list[tuple[int, int, int]]:
    """The RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium's
    screenshots are), decoded with the standard library: the test reads the screenshot."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert depth == 8, depth
            assert color in (2, 6), color
            assert interlace == 0, interlace
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    prev, out = bytearray(stride), []
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        out += [tuple(line[i : i + 3]) for i in range(0, stride, channels)]  # type: ignore[misc]
        prev = line
    return out


def _near(rgb: tuple[int, int, int], hex_colour: str) -> bool:
    want = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(abs(x - y) for x, y in zip(rgb, want, strict=True)) <= 30


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
            for chart_id in ("drift-series-chart", "freshness-series-chart", "scoring-chart"):
                assert page.locator(f"#{chart_id} circle.value").count() > 0, chart_id
            box = page.locator("#revenue-chart").bounding_box()
            assert box is not None
            assert box["width"] > 300  # laid out, not collapsed
            assert box["height"] > 100
            page.screenshot(path=str(out / "dashboard.png"), full_page=True)
            # the picture itself, read back from the screenshot: every version's line is drawn
            # in its colour (a version of one day is a dot that another's may cover)
            chart = _pixels(page.locator("#revenue-chart").screenshot())
            series = {str(el.get_attribute("stroke")) for el in lines.all()}
            drawn_lines = {
                str(el.get_attribute("stroke"))
                for el in lines.all()
                if len(str(el.get_attribute("points")).split()) >= 2
            }
            assert drawn_lines
            seen = {c: sum(1 for px in chart if _near(px, c)) for c in series}
            assert all(seen[c] >= 10 for c in drawn_lines), (seen, drawn_lines)
            # each deployment marker is drawn in its kind's colour down its own column
            shot = page.locator("#revenue-chart").screenshot()
            width = struct.unpack(">I", shot[16:20])[0]
            height = len(chart) // width
            # (in drawing order: where markers fall together, the last one drawn shows)
            on_top: dict[int, tuple[str | None, str]] = {}
            for el in page.locator("#revenue-chart line.marker").all():
                x = round(float(str(el.get_attribute("x1"))) / 760 * width)
                for near in range(x - 1, x + 2):
                    on_top.pop(near, None)
                on_top[x] = (el.get_attribute("data-kind"), str(el.get_attribute("stroke")))
            assert {k for k, _ in on_top.values()} >= {"canary", "rollback"}
            for x, (kind, colour) in on_top.items():
                column = [chart[y * width + c] for y in range(height) for c in (x - 1, x, x + 1)]
                marked = sum(1 for px in column if _near(px, colour))
                assert marked >= 20, (kind, colour, x, marked)
            assert not series & {"#2ca02c", "#ff7f0e", "#d62728"}  # no line looks like a marker
            white = sum(1 for px in chart if px == (255, 255, 255))
            assert white < len(chart)  # something is drawn at all
        finally:
            browser.close()
    assert (out / "dashboard.png").stat().st_size > 10_000
