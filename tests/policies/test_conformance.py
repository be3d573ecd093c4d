"""Every policy class passes the same conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from offerloop import ArtifactCorrupt
from offerloop.policies import (
    EpsilonGreedy,
    LinearRevenue,
    LoggedData,
    Policy,
    RandomPolicy,
    RulesPolicy,
    dump_policy,
    load_policy,
    sha256,
)
from offerloop.testing import PolicyConformance
from tests.helpers import campaign, logged_data


@pytest.fixture(scope="module")
def logged() -> LoggedData:
    return logged_data(600, seed=3)[0]


class TestRandom(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        return RandomPolicy(campaign().offer_ids)


class TestRules(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        return RulesPolicy.from_campaign(campaign())


class TestLinearEpsilonGreedy(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        offers = campaign().offer_ids
        return EpsilonGreedy(offers, LinearRevenue(offers, alpha=2.0), epsilon=0.2)


def test_epsilon_greedy_keeps_a_floor_for_every_offer(logged: LoggedData) -> None:
    offers = campaign().offer_ids
    p = EpsilonGreedy(offers, LinearRevenue(offers), epsilon=0.1).fit(logged)
    probs = p.act_batch(logged.features)
    assert probs.min() >= 0.1 / len(offers) - 1e-12
    assert np.allclose(probs.max(axis=1), 0.9 + 0.1 / len(offers))


def test_unfitted_linear_policy_is_uniform() -> None:
    offers = campaign().offer_ids
    p = EpsilonGreedy(offers, LinearRevenue(offers), epsilon=0.1)
    np.testing.assert_allclose(p.act({}), 1 / len(offers))


def test_linear_policy_learns_to_beat_random() -> None:
    data, _, _world = logged_data(6000, seed=11)
    offers = campaign().offer_ids
    policy = EpsilonGreedy(offers, LinearRevenue(offers), epsilon=0.0).fit(data)
    test, expected, _ = logged_data(3000, seed=12)
    value = (policy.act_batch(test.features) * expected).sum(axis=1).mean()
    assert value > 2.0 * expected.mean()


def test_tampered_artifact_is_refused() -> None:
    data = dump_policy(RandomPolicy(campaign().offer_ids))
    digest = sha256(data)
    with pytest.raises(ArtifactCorrupt, match="sha256"):
        load_policy(data.replace(b"random", b"rules_"), digest)
    bad = b'{"format": "offerloop.policy/1", "kind": "pickle"}'
    with pytest.raises(ArtifactCorrupt, match="not a valid policy artifact"):
        load_policy(bad, sha256(bad))


def test_rules_first_match_wins() -> None:
    p = RulesPolicy.from_campaign(campaign())
    assert p.choose({"purchases_total": 2, "spend_total": 80.0, "level": 30}) == "mega:urgency"
    assert p.choose({"purchases_total": 1, "spend_total": 5.0}) == "gems:discount"
    assert p.choose({"purchases_total": 0, "level": 25}) == "boosters:progress"
    assert p.choose({}) == "starter:discount"


def _enc() -> list[dict[str, object]]:
    from offerloop.features import Encoder, load_features

    return Encoder.of(load_features()).spec()


class TestGBTRevenueEpsilonGreedy(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        from offerloop.policies import GBTRevenue

        c = campaign()
        model = GBTRevenue(c.offer_ids, [o.price for o in c.offers], _enc(), n_estimators=20)
        return EpsilonGreedy(c.offer_ids, model, 0.1)


class TestGBTPurchaseSoftmax(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        from offerloop.policies import GBTPurchase, Softmax

        c = campaign()
        model = GBTPurchase(c.offer_ids, [o.price for o in c.offers], _enc(), n_estimators=20)
        return Softmax(c.offer_ids, model, temperature=0.3, floor=0.004)


class TestGBTPurchaseInverseGap(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        from offerloop.policies import GBTPurchase, InverseGap

        c = campaign()
        model = GBTPurchase(c.offer_ids, [o.price for o in c.offers], _enc(), n_estimators=20)
        return InverseGap(c.offer_ids, model, gamma_scale=0.5, floor=0.02)


class TestFixed(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        from offerloop.policies import FixedPolicy

        offers = campaign().offer_ids
        return FixedPolicy(offers, [1.0] + [0.0] * (len(offers) - 1))


def test_softmax_keeps_its_floor(logged: LoggedData) -> None:
    from offerloop.policies import GBTPurchase, Softmax

    c = campaign()
    model = GBTPurchase(c.offer_ids, [o.price for o in c.offers], _enc(), n_estimators=20)
    probs = Softmax(c.offer_ids, model, 0.05, floor=0.004).fit(logged).act_batch(logged.features)
    assert probs.min() >= 0.004 - 1e-12


def test_inverse_gap_explores_by_gap_and_less_with_more_data(logged: LoggedData) -> None:
    from offerloop.policies import InverseGap, LinearRevenue

    c = campaign()
    k = len(c.offer_ids)
    policy = InverseGap(c.offer_ids, LinearRevenue(c.offer_ids, encoder=_enc()), 1.0, 0.02)
    assert np.allclose(policy.act_batch(logged.features[:5]), 1.0 / k)  # unfitted: uniform
    policy.fit(logged)
    assert policy.gamma == pytest.approx(np.sqrt(k * len(logged)))
    rows = logged.features[:200]
    probs = policy.act_batch(rows)
    scores = policy.model.predict_batch(rows)
    assert probs.min() >= 0.02 / k - 1e-12  # the floor
    # the best offer is the likeliest; among the others, a smaller gap never gets less
    assert (probs.argmax(axis=1) == scores.argmax(axis=1)).all()
    for p, y in zip(probs, scores, strict=True):
        others = np.argsort(-y)[1:]
        assert (np.diff(p[others]) <= 1e-12).all()
    # SquareCB's bound: expected regret against the model's own best <= k / gamma + floor part
    gap = scores.max(axis=1, keepdims=True) - scores
    cost = (probs * gap).sum(axis=1)
    assert (cost <= k / policy.gamma + 0.02 * gap.max(axis=1) + 1e-9).all()
    half = InverseGap(c.offer_ids, LinearRevenue(c.offer_ids, encoder=_enc()), 1.0, 0.02)
    half.fit(logged.take(np.arange(len(logged) // 4)))
    assert half.gamma < policy.gamma  # less data: more exploration


def test_changed_artifact_on_disk_refuses_to_load(tmp_path: object) -> None:
    from pathlib import Path

    from offerloop import ManualClock, Offerloop, load_settings

    system = Offerloop(load_settings(env={}, data_dir=str(tmp_path)), ManualClock(0.0))
    try:
        c = system.campaign(None)
        rec = system.registry.register(c.id, RulesPolicy.from_campaign(c))
        path = Path(str(tmp_path)) / "artifacts" / rec.artifact
        path.write_bytes(path.read_bytes().replace(b"mega:urgency", b"coins:social"))
        with pytest.raises(ArtifactCorrupt, match=f"artifact of {rec.version}: sha256"):
            system.registry.load(rec.version)
        with pytest.raises(ArtifactCorrupt):
            system.release(rec.version, actor="t")  # never released either
    finally:
        system.close()
