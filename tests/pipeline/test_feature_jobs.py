"""Backfill of features added later, and the skew report."""

from __future__ import annotations

from pathlib import Path

from offerloop import ManualClock, Offerloop, Settings, format_ts
from offerloop.events import EventIn
from offerloop.features import reference_features
from offerloop.pipeline import backfill, skew_report

FEATURES_V2 = """
from offerloop.features import FeatureSet, aggregate
from offerloop.features.default import FEATURES as BASE

FEATURES = FeatureSet(
    list(BASE) + [aggregate("spend_6h", "purchase", "sum", "6h", property="amount")]
)
"""


def _traffic(system: Offerloop, clock: ManualClock, n: int = 40) -> None:
    for i in range(n):
        p = f"p{i % 7}"
        system.ingest(
            [
                EventIn(
                    event_id=f"s{i}", player_id=p, type="session_start", ts=format_ts(clock.now())
                ),
                EventIn(
                    event_id=f"b{i}",
                    player_id=p,
                    type="purchase",
                    ts=format_ts(clock.now() - 600),
                    properties={"amount": float(i % 5)},
                ),
            ]
        )
        system.decide(p, context={"local_hour": i % 24})
        clock.advance(1800)


def test_no_skew_on_normal_traffic(system: Offerloop, clock: ManualClock) -> None:
    _traffic(system, clock)
    r = skew_report(system)
    assert r.decisions == 40
    assert r.ok, {k: v[:1] for k, v in r.mismatches.items() if v}
    assert all(n == 40 for n in r.compared.values())


def test_skew_report_catches_stale_serving(settings: Settings, clock: ManualClock) -> None:
    stale = Offerloop(settings.replace(feature_delay_seconds=3 * 3600.0), clock)
    stale.bootstrap()
    try:
        _traffic(stale, clock)
        r = skew_report(stale)
        assert not r.ok
        assert r.mismatches["purchases_total"]
        assert not r.mismatches["country"]  # no profile events: default both ways
    finally:
        stale.close()


def test_backfill_adds_a_new_feature_point_in_time(
    settings: Settings, clock: ManualClock, tmp_path: Path
) -> None:
    v1 = Offerloop(settings, clock)
    v1.bootstrap()
    _traffic(v1, clock)
    v1.close()
    path = tmp_path / "features_v2.py"
    path.write_text(FEATURES_V2)
    v2 = Offerloop(settings.replace(features=str(path)), clock)
    try:
        r = backfill(v2)
        assert (r.decisions, r.updated) == (40, 40)
        assert "spend_6h" in r.features
        for d in v2.backend.decisions(v2.default_campaign, 0, 1e12):
            assert "spend_6h" not in d.features  # logged values are never rewritten
            events = v2.backend.player_events(d.player_id, d.ts)
            want = reference_features(v2.features, events, d.ts, d.context)["spend_6h"]
            assert d.backfilled == {"spend_6h": want}
            assert d.training_row["spend_6h"] == want
        assert backfill(v2).decisions == 0  # nothing left to do
    finally:
        v2.close()
