"""Recency-weighted learners (``purchase_gbt@2d``): after tastes change they follow the
new ones; the plain learner still averages both."""

from __future__ import annotations

import numpy as np
import pytest

from offerloop import InvalidInput, load_settings
from offerloop._settings import learner_parts
from offerloop.features import Encoder, FeatureSet, aggregate
from offerloop.pipeline import make_policy
from offerloop.policies import (
    EpsilonGreedy,
    GBTPurchase,
    LinearRevenue,
    LoggedData,
    dump_policy,
    load_policy,
    sha256,
)
from tests.helpers import campaign

DAY = 86400.0
OFFERS = ["coins:discount", "gems:discount"]


def _changing(n: int = 4000) -> LoggedData:
    """Days 0-9 everyone buys coins; days 10-11 everyone buys gems."""
    rng = np.random.default_rng(3)
    ts = np.sort(rng.uniform(0, 12 * DAY, n))
    shown = rng.integers(0, 2, n)
    liked = np.where(ts < 10 * DAY, 0, 1)
    rewards = np.where(shown == liked, 1.0, 0.0) * (rng.random(n) < 0.6)
    return LoggedData([{}] * n, [OFFERS[a] for a in shown], rewards, np.full(n, 0.5), ts)


@pytest.mark.parametrize("kind", [GBTPurchase, LinearRevenue])
def test_a_half_life_follows_the_newest_tastes(kind: type) -> None:
    enc = Encoder.of(FeatureSet([aggregate("purchases", "purchase", "count")])).spec()
    extra = {"prices": [1.0, 1.0], "n_estimators": 20} if kind is GBTPurchase else {}
    data = _changing()
    plain = kind(OFFERS, encoder=enc, **extra).fit(data)
    recent = kind(OFFERS, encoder=enc, half_life=DAY, **extra).fit(data)
    assert plain.predict_batch([{}])[0].argmax() == 0  # ten days of coins outweigh two
    assert recent.predict_batch([{}])[0].argmax() == 1  # the last two days weigh most
    # the half-life is part of the artifact
    data = dump_policy(EpsilonGreedy(OFFERS, recent, epsilon=0.1))
    loaded = load_policy(data, sha256(data))
    assert isinstance(loaded, EpsilonGreedy)
    assert loaded.model.get_params()["half_life"] == DAY


def test_learner_names_carry_a_half_life() -> None:
    assert learner_parts("purchase_gbt") == ("purchase_gbt", 0.0)
    assert learner_parts("purchase_gbt@2d") == ("purchase_gbt", 2 * DAY)
    assert learner_parts("linear@36h") == ("linear", 36 * 3600.0)
    for bad in ("forest", "purchase_gbt@0d", "linear@2w", "linear@"):
        with pytest.raises(ValueError, match="is not a learner"):
            learner_parts(bad)
    with pytest.raises(InvalidInput, match="learners"):
        load_settings(env={}, learners=("purchase_gbt@fast",))
    s = load_settings(env={}, learners=("purchase_gbt", "purchase_gbt@2d"))
    policy = make_policy("purchase_gbt@2d", campaign(), Encoder.of(FeatureSet([])), s)
    assert policy.model.get_params()["half_life"] == 2 * DAY
