"""Offer-history features: what the player was shown, bought and ignored, per bundle and
message, from the offer_outcome events offerloop writes for decisions and attributed
purchases; the same online, after a rebuild from the log, and offline."""

from __future__ import annotations

import numpy as np
import pytest

from offerloop import InvalidInput, ManualClock, Offerloop, format_ts
from offerloop.backends import OFFER_OUTCOME, EventRecord
from offerloop.campaigns import offer_keys
from offerloop.events import EventIn
from offerloop.features import (
    Encoder,
    FeatureSet,
    OnlineFeatures,
    aggregate,
    offer_history,
    reference_features,
)
from offerloop.policies import GBTPurchase, LoggedData


def _history(features: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in features.items() if k.startswith(("bundle_", "message_"))}


def _buy(system: Offerloop, i: int, decision_id: str, amount: float) -> None:
    system.ingest(
        [
            EventIn(
                event_id=f"buy{i}",
                player_id="p1",
                type="purchase",
                ts=format_ts(system.clock.now()),
                properties={"amount": amount, "decision_id": decision_id},
            )
        ]
    )


def test_decisions_and_attributed_purchases_become_the_players_offer_history(
    system: Offerloop, clock: ManualClock
) -> None:
    first = system.decide("p1")
    # a decision never counts itself: its logged features were read before it
    logged = first.record.features
    assert all(v == 0 for k, v in logged.items() if k.startswith(("bundle_", "message_")))
    bundle, message = offer_keys(first.record.offer_id)["bundle"], first.offer.message.id
    clock.advance(3600)
    f = system.player_features.of("p1", clock.now())
    assert f[f"bundle_{bundle}_seen_30d"] == 1
    assert f[f"bundle_{bundle}_ignored_30d"] == 1
    assert f[f"message_{message}_seen_30d"] == 1
    assert sum(v for k, v in f.items() if k.endswith("_seen_30d")) == 2  # one bundle, one message

    _buy(system, 1, first.record.decision_id, first.record.price)
    f = system.player_features.of("p1", clock.now())
    assert f[f"bundle_{bundle}_bought_30d"] == 1
    assert f[f"bundle_{bundle}_ignored_30d"] == 0
    assert f[f"message_{message}_bought_30d"] == 1

    # a purchase not attributed (another price) is no "bought"
    clock.advance(3600)
    second = system.decide("p1")
    _buy(system, 2, second.record.decision_id, second.record.price + 50)
    clock.advance(3600)
    f = system.player_features.of("p1", clock.now())
    assert sum(v for k, v in f.items() if k.startswith("bundle_") and "_bought_" in k) == 1
    assert sum(v for k, v in f.items() if k.startswith("bundle_") and "_seen_" in k) == 2
    # the next decision logged what the player had seen and bought so far
    third = system.decide("p1").record.features
    assert third[f"bundle_{bundle}_bought_30d"] == 1

    # the events are in the log: folding them again (the follower, a restart) counts once,
    # and the offline rule gives the same values
    clock.advance(60)
    online = _history(system.player_features.of("p1", clock.now()))
    assert sum(v for k, v in online.items() if k.startswith("bundle_") and "_seen_" in k) == 3
    system.flush_shadows()
    system.player_features.follow()
    assert _history(system.player_features.of("p1", clock.now())) == online
    events = system.backend.player_events("p1", clock.now())
    assert len([e for e in events if e.type == OFFER_OUTCOME]) == 3 + 1  # 3 shown, 1 bought
    assert _history(reference_features(system.features, events, clock.now())) == online
    system.player_features.rebuild()
    assert _history(system.player_features.of("p1", clock.now())) == online


def test_a_client_cannot_write_offer_outcomes(system: Offerloop, clock: ManualClock) -> None:
    fake = EventIn(
        event_id="x",
        player_id="p1",
        type=OFFER_OUTCOME,
        ts=format_ts(clock.now()),
        properties={"bundle": "mega", "bought": 1},
    )
    with pytest.raises(InvalidInput) as exc:
        system.ingest([fake])
    assert [p.location for p in exc.value.problems] == ["events[0].type"]
    assert not system.backend.player_events("p1", clock.now())


def test_an_event_folded_twice_counts_once() -> None:
    fs = FeatureSet(offer_history(["mega"], window="7d"))
    online = OnlineFeatures(fs)
    e = EventRecord(
        "d1.seen", "p", OFFER_OUTCOME, 100.0, {"bundle": "mega", "seen": 1, "ignored": 1}, 100.0
    )
    online.apply([e], 100.0)  # at the decision (not yet stored: no seq)
    online.apply([e.with_seq(7)], 101.0)  # from the log
    online.apply([e.with_seq(7)], 102.0)  # the follower again
    assert online.read("p", 200.0)["bundle_mega_seen_7d"] == 1


def test_offer_history_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="by must be one of"):
        offer_history(["mega"], by="price")
    with pytest.raises(ValueError, match="outcomes must be among"):
        offer_history(["mega"], outcomes=["clicked"])
    forged = aggregate("x", OFFER_OUTCOME, "sum", property="bought", where="bundle == 'mega'")
    FeatureSet([forged])  # a plain aggregate over the events is fine
    names = [f.name for f in offer_history(["starter:discount"], by="offer", window="7d")]
    assert names == [
        "offer_starter__discount_seen_7d",
        "offer_starter__discount_bought_7d",
        "offer_starter__discount_ignored_7d",
    ]


def test_a_model_reads_the_history_of_the_offer_it_scores() -> None:
    """Players buy only the bundle they bought before. The training players only ever
    favoured coins or gems; the "own history" column (shared by every offer) still tells the
    model that a player who bought mega before wants mega: pooling across offers."""
    bundles = ["coins", "gems", "mega"]
    offers = [f"{b}:discount" for b in bundles]
    fs = FeatureSet(offer_history(bundles, outcomes=["bought"]))
    enc = Encoder.of(fs)
    assert enc.offer_groups == ["bundle_bought_30d"]
    assert enc.offer_columns([offer_keys(o) for o in offers]).tolist() == [[0], [1], [2]]
    again = Encoder(enc.spec())  # as stored in an artifact
    assert again.offer_columns([offer_keys(o) for o in [*offers, "x"]]).tolist() == [
        [0],
        [1],
        [2],
        [-1],
    ]
    rng = np.random.default_rng(0)
    n = 3000
    fav = rng.integers(0, 2, n)  # coins or gems
    rows = [{f"bundle_{bundles[j]}_bought_30d": 1} for j in fav]
    shown = rng.integers(0, 3, n)
    rewards = np.where(shown == fav, 1.0, 0.0) * (rng.random(n) < 0.5)
    data = LoggedData(
        rows, [offers[a] for a in shown], rewards, np.full(n, 1 / 3), np.arange(n, dtype=float)
    )
    model = GBTPurchase(offers, [1.0, 1.0, 1.0], enc.spec(), n_estimators=30).fit(data)
    pred = model.predict_batch([{f"bundle_{b}_bought_30d": 1} for b in bundles])
    assert pred.argmax(axis=1).tolist() == [0, 1, 2]
    assert pred[2, 2] > 0.3
    assert pred[2, :2].max() < 0.1
