"""The monitoring API: business numbers from the logs (matured decisions only), drift, service
health, runs; bad parameters are 4xx naming the parameter; the metrics are exposed."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from offerloop import ManualClock, Offerloop, format_ts
from offerloop.pipeline import retrain
from tests.pipeline.test_retrain import _traffic

HOUR = 3600.0


def _svg(page: str, chart_id: str) -> str:
    """One chart of the dashboard, from its svg element to its end."""
    start = page.index(f'id="{chart_id}"')
    return page[start : page.index("</svg>", start)]


def _sample(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, flags=re.M):
        total += float(m.group(1))
    return total


def test_revenue_counts_matured_decisions_only(
    client: TestClient, system: Offerloop, clock: ManualClock
) -> None:
    _traffic(system, clock, 300)
    clock.advance(25 * HOUR)
    _traffic(system, clock, 20)  # still inside their attribution window
    body = client.get("/v1/monitoring/revenue").json()
    assert body["open_decisions"] == 20
    series = body["series"]
    assert sum(p["decisions"] for p in series) == 300
    assert {p["version"] for p in series} == {"random-1"}
    decisions = system.backend.decisions(system.default_campaign, 0, clock.now() - 24 * HOUR)
    paid = sum(system.decision(d.decision_id)[1].revenue for d in decisions)
    assert sum(p["revenue"] for p in series) == paid > 0
    assert [t["to"] for t in body["transitions"]] == ["released", "shadow"]  # the bootstrap
    conv = client.get("/v1/monitoring/conversion").json()["offers"]
    assert sum(o["decisions"] for o in conv) == 300
    starter = [o for o in conv if o["offer"].startswith("starter:")]
    assert all(o["conversion"] == 1.0 for o in starter)  # the toy world: the starter pack sells
    assert all(o["conversion"] == 0.0 for o in conv if o not in starter)
    shadows = client.get("/v1/monitoring/shadows").json()["series"]
    assert {p["version"] for p in shadows} == {"rules-2"}
    assert sum(p["decisions"] for p in shadows) == 300


def test_calibration_exploration_and_drift_of_a_learned_release(
    client: TestClient, system: Offerloop, clock: ManualClock
) -> None:
    _traffic(system, clock, 600)
    clock.advance(25 * HOUR)
    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    r = retrain(system, actor="test")
    learned = r.deployed or r.version  # the delivered (refitted) version serves everyone now
    system.deployments.release(learned, actor="test")
    _traffic(system, clock, 400)
    drift = client.get("/v1/monitoring/drift").json()
    assert drift["reference"]["basis"] == f"training window of {learned}"
    assert {f["feature"] for f in drift["features"]} == set(system.features.names)
    assert drift["live_rows"] == 400
    # what the background refresh started by a scrape does
    client.app.state.monitor.refresh_gauges()
    live = client.get("/metrics").text  # drift gauges: the last day's traffic vs training
    assert "offerloop_feature_drift_psi{" in live
    assert "offerloop_drift_alert_level{" in live
    assert "offerloop_feature_default_share{" in live
    clock.advance(25 * HOUR)
    cal = {
        v["version"]: v["calibration"]
        for v in client.get("/v1/monitoring/calibration").json()["versions"]
    }
    assert cal["random-1"] is None  # no reward model
    assert cal[learned]["decisions"] == 400
    assert cal[learned]["predicted_per_decision"] > 0
    assert len(cal[learned]["bins"]) == 5
    client.app.state.monitor.refresh_gauges()
    metrics = client.get("/metrics").text
    assert _sample(metrics, "offerloop_exploration_decisions_total") > 0
    assert _sample(metrics, "offerloop_feature_freshness_seconds_count") > 0
    assert re.search(
        rf'offerloop_realised_revenue_per_decision{{campaign="spring_sale",mode="released",'
        rf'model_version="{learned}"}} [0-9.]+',
        metrics,
    )


def test_health_endpoints_and_runs(client: TestClient, system: Offerloop) -> None:
    for i in range(5):
        assert client.post("/v1/decide", json={"player_id": f"p{i}"}).status_code == 200
    lat = client.get("/v1/monitoring/latency").json()
    assert lat["decision_seconds"]["count"] == 5
    assert 0 < lat["decision_seconds"]["p50"] <= lat["decision_seconds"]["p99"]
    assert client.get("/v1/monitoring/freshness").json()["age_seconds"]["count"] == 0
    assert client.get("/v1/monitoring/runs").json() == {"runs": []}


def test_bad_parameters_are_named(client: TestClient) -> None:
    r = client.get("/v1/monitoring/revenue", params={"start": "yesterday"})
    assert r.status_code == 422
    assert r.json()["error"]["problems"][0]["location"] == "start"
    r = client.get("/v1/monitoring/revenue", params={"bucket": "1s"})
    assert r.status_code == 422
    assert "bucket" in r.json()["error"]["message"]
    assert client.get("/v1/monitoring/drift", params={"campaign": "nope"}).status_code == 404
    assert client.get("/v1/monitoring/runs", params={"limit": 0}).status_code == 422
    assert client.get("/dashboard", params={"refresh": -1}).status_code == 422


def test_dashboard_html_and_report(
    client: TestClient, system: Offerloop, clock: ManualClock, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from offerloop.monitoring import write_report

    _traffic(system, clock, 200)
    clock.advance(25 * HOUR)
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh" content="30">' in page.text
    assert page.text.count('class="point') == len(
        client.get("/v1/monitoring/revenue").json()["series"]
    )
    path = write_report(client.app.state.monitor, tmp_path / "r" / "report.html")
    text = path.read_text()
    assert "http-equiv" not in text  # static
    assert 'id="revenue-chart"' in text


def test_the_dashboard_shows_a_range_and_finds_the_data_when_the_clock_is_far_from_it(
    client: TestClient, system: Offerloop, clock: ManualClock, tmp_path: object
) -> None:
    """The demo's data lies in March while the clock reads December: by default the
    dashboard shows the 14 days up to the newest decision and says so; a range can be
    picked by dates (the end date included) or RFC 3339 times; the x axis has dates."""
    from offerloop import format_ts, parse_rfc3339

    first = clock.now()
    _traffic(system, clock, 300)
    clock.advance(25 * HOUR)
    _traffic(system, clock, 50)
    clock.advance(90 * 24 * HOUR)  # months later
    page = client.get("/dashboard", params={"refresh": 0}).text
    assert "showing the 14 days up to the newest data" in page
    assert page.count('class="point') >= 2  # the data is drawn
    day = format_ts(first)[:10]
    assert re.search(r'<text class="tick date"[^>]*>\d{4}-\d{2}-\d{2}</text>', page)
    assert 'name="start"' in page
    assert 'name="end"' in page
    picked = client.get(
        "/dashboard",
        params={"refresh": 0, "start": day, "end": day},  # one day, included
    ).text
    m = re.search(r'id="range" data-start="([^"]+)" data-end="([^"]+)"', picked)
    assert m is not None
    assert parse_rfc3339(m.group(1)) == parse_rfc3339(f"{day}T00:00:00Z")
    assert parse_rfc3339(m.group(2)) == parse_rfc3339(f"{day}T00:00:00Z") + 24 * HOUR
    assert "showing the 14 days up to the newest data" not in picked
    for bad in ({"start": "yesterday"}, {"start": day, "end": "2000-01-01"}):
        r = client.get("/dashboard", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["error"]["problems"][0]["location"].endswith("start")


def test_the_dashboard_puts_runs_thin_evidence_and_scoring_time_on_the_time_axis(
    client: TestClient, system: Offerloop, clock: ManualClock
) -> None:
    from offerloop.pipeline import run_pipeline

    _traffic(system, clock, 300)
    clock.advance(25 * HOUR)
    run = run_pipeline(system)
    _traffic(system, clock, 30)  # a day with few decisions: thin
    clock.advance(25 * HOUR)
    page = client.get("/dashboard", params={"refresh": 0}).text
    assert f'data-run="{run["id"]}"' in page  # the run, on the revenue chart's time axis
    thin = re.findall(r'<circle class="point thin"[^>]*>.*?</circle>', page)
    assert thin
    assert all("thin evidence: " in c for c in thin)
    assert 'id="scoring-chart"' in page
    scoring = client.get("/v1/monitoring/scoring").json()["series"]
    assert sum(p["decisions"] for p in scoring) == 330
    assert all(p["p99_ms"] >= p["p50_ms"] >= 0 for p in scoring)
    # one point per (version, day)
    assert _svg(page, "scoring-chart").count('class="value"') == len(scoring)


def test_drift_and_freshness_are_time_series_from_the_logs(
    client: TestClient, system: Offerloop, clock: ManualClock
) -> None:
    """Drift per day against the training window of the version released that day; how late
    events arrived per day and the share of decisions that fell back; both on the dashboard,
    thin days marked."""
    from offerloop.events import EventIn

    _traffic(system, clock, 300)  # day 1: the day-one policy
    clock.advance(25 * HOUR)
    system.settings = system.settings.replace(
        gate_margin=-1e9, min_effective_rows=1, min_rewarded_rows=0
    )
    r = retrain(system, actor="test")
    learned = r.deployed or r.version
    system.deployments.release(learned, actor="test")
    clock.advance(2 * HOUR)
    sessions = [  # every player plays five sessions: sessions_7d moves far from training
        EventIn(
            event_id=f"s{p}-{k}",
            player_id=f"p{p}",
            type="session_start",
            ts=format_ts(clock.now() - 60),
        )
        for p in range(50)
        for k in range(5)
    ]
    system.ingest(sessions)
    _traffic(system, clock, 300)  # day 2: the learned release
    clock.advance(3 * 24 * HOUR)
    late = [
        EventIn(
            event_id=f"late{i}",
            player_id=f"p{i}",
            type="session_start",
            ts=format_ts(clock.now() - (7200 if i < 10 else 600)),
        )
        for i in range(50)
    ]
    system.ingest(late)  # 40 events 10 minutes late, 10 two hours late
    _traffic(system, clock, 20, sells="nothing")  # a thin day, no purchase events

    series = client.get("/v1/monitoring/drift/series").json()["series"]
    days = [p for p in series if p["decisions"]]
    assert [p["decisions"] for p in days] == [300, 300, 20]
    assert days[0]["released"] == "random-1"
    assert days[0]["reference"].startswith("first 24 h of the log")
    assert days[0]["max_psi"] < 0.1  # the log's first day against itself
    assert days[1]["released"] == days[2]["released"] == learned
    assert days[1]["reference"] == f"training window of {learned}"
    assert days[1]["psi"]["sessions_7d"] >= 0.25
    assert days[1]["state"] == "alert"
    assert [p["thin"] for p in days] == [False, False, True]
    assert all(p["state"] == "no data" and not p["psi"] for p in series if not p["decisions"])

    fresh = client.get("/v1/monitoring/freshness/series").json()["series"]
    (last,) = [p for p in fresh if p["decisions"] == 20]
    assert last["events"] == 50  # only the late ones were received that day
    assert last["lag_p50_seconds"] == 600.0
    assert last["lag_p99_seconds"] == 7200.0
    assert last["fallback_share"] == 0.0
    assert all(p["fallback_share"] == 0.0 for p in fresh if p["decisions"])
    assert all(p["fallback_share"] is None for p in fresh if not p["decisions"])

    page = client.get("/dashboard", params={"refresh": 0}).text
    for chart in ("drift-series-chart", "freshness-series-chart", "fallback-series-chart"):
        assert f'id="{chart}"' in page
    drift_svg = _svg(page, "drift-series-chart")
    assert 'data-name="sessions_7d"' in drift_svg
    assert "thin evidence: 20 decisions" in drift_svg
    assert drift_svg.count('class="reference"') == 2  # warn and alert
