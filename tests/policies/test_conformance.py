"""Every policy class passes the same conformance suite."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from offerloop import ArtifactCorrupt
from offerloop.features import Encoder, load_features
from offerloop.policies import (
    POLICIES,
    REWARD_MODELS,
    EpsilonGreedy,
    FeatureRow,
    LinearRevenue,
    LoggedData,
    Policy,
    RandomPolicy,
    RewardModel,
    RulesPolicy,
    ThompsonSampling,
    dump_policy,
    load_policy,
    sha256,
)
from offerloop.testing import PolicyCase, PolicyConformance, policy_cases
from tests.helpers import campaign, logged_data


@pytest.fixture(scope="module")
def logged() -> LoggedData:
    return logged_data(600, seed=3)[0]


_CASES = policy_cases(campaign(), Encoder.of(load_features()).spec())
# beside the registry's examples: the rules without exploration (deterministic)
_CASES.append(PolicyCase("rules", "deterministic", lambda: RulesPolicy.from_campaign(campaign())))


class TestEveryPolicy(PolicyConformance):
    """The suite over every registered policy kind and reward model (offerloop.testing)."""

    @pytest.fixture(params=_CASES, ids=lambda case: case.name)
    def policy(self, request: pytest.FixtureRequest) -> Policy:
        case: PolicyCase = request.param
        return case.build()


def test_every_registered_kind_is_in_the_suite() -> None:
    names = {case.kind for case in _CASES} | {case.model_kind for case in _CASES}
    assert set(POLICIES) | set(REWARD_MODELS) <= names


def test_exploring_rules_keep_every_offer_and_favour_the_rule() -> None:
    c = campaign()
    k = len(c.offer_ids)
    p = RulesPolicy.from_campaign(c, explore=0.2).act({"purchases_total": 1, "spend_total": 5.0})
    assert p[c.offer_ids.index("gems:discount")] == pytest.approx(0.8 + 0.2 / k)
    assert p.min() == pytest.approx(0.2 / k)
    with pytest.raises(ValueError, match="explore"):
        RulesPolicy.from_campaign(c, explore=1.5)


def test_day_one_release_follows_the_rules_share(tmp_path: object) -> None:
    from offerloop import InvalidInput, ManualClock, Offerloop, load_settings

    with pytest.raises(InvalidInput, match="day_one_rules_share"):
        load_settings(env={}, day_one_rules_share=1.0)
    s = load_settings(env={}, data_dir=str(tmp_path), day_one_rules_share=0.7)
    system = Offerloop(s, ManualClock(0.0))
    try:
        system.bootstrap()
        c = system.campaign(None)
        state = system.deployments.state(c.id)
        released = system.registry.load(state.released)
        assert isinstance(released, RulesPolicy)
        assert released.explore == pytest.approx(0.3)
        assert not state.shadows  # no deterministic rules that could end exploration
    finally:
        system.close()


def test_day_one_thompson_tries_offers_by_their_chance_of_earning_most(tmp_path: object) -> None:
    """day_one = thompson: Thompson sampling under the uninformative prior (each offer's
    purchase probability uniform on [0, 1]) releases from the first request: an offer is
    tried in proportion to its chance of earning the most, so the dearest bundle leads, and
    day_one_explore of the decisions stay uniform; the rules run in shadow."""
    from offerloop import InvalidInput, ManualClock, Offerloop, load_settings

    with pytest.raises(InvalidInput, match="day_one"):
        load_settings(env={}, day_one="greedy")
    with pytest.raises(InvalidInput, match="day_one_explore"):
        load_settings(env={}, day_one_explore=0.0)
    s = load_settings(env={}, data_dir=str(tmp_path), day_one="thompson", day_one_explore=0.3)
    system = Offerloop(s, ManualClock(0.0))
    try:
        system.bootstrap()
        c = system.campaign(None)
        k = len(c.offer_ids)
        state = system.deployments.state(c.id)
        released = system.registry.load(state.released)
        assert isinstance(released, ThompsonSampling)
        assert "learner" not in system.registry.get(state.released).lineage  # a placeholder
        p = released.act({"spend_total": 100.0, "platform": "ios"})
        assert p.min() == pytest.approx(0.3 / k, rel=0.05)
        prices = np.array([o.price for o in c.offers])
        # P(theta_a * price_a is the largest) for theta uniform: the dearest offers lead
        dearest = prices == prices.max()
        assert p[dearest].sum() > 0.9 * (1 - 0.3)
        assert [system.registry.get(v).kind for v in state.shadows] == ["rules"]
        first = system.decide("p1").record
        assert first.model_version == state.released
        assert first.propensity == pytest.approx(p[c.offer_ids.index(first.offer_id)])
    finally:
        system.close()


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


class _Known(RewardModel):
    """A reward model whose predictions are given (the test's ground truth)."""

    kind = "known"

    def __init__(self, offers: list[str], revenue: list[float]) -> None:
        super().__init__(offers)
        self.revenue = np.asarray(revenue)

    def fit(self, data: LoggedData) -> _Known:
        return self

    def predict_batch(self, rows: Sequence[FeatureRow]) -> np.ndarray:
        return np.tile(self.revenue, (len(rows), 1))


def test_calibrated_thompson_tries_what_it_knows_little_about() -> None:
    """Three offers the model rates 1.0, 0.9 and 0.5 per decision (price 10: purchase
    probabilities 0.10, 0.09, 0.05). The first and the last were shown 2,000 times each and
    bought as predicted; the second was never shown: it keeps a large share, because the
    model may well be wrong about it, while the well-checked worse one gets the floor. Once
    the second has been shown as often and bought less than predicted, it gets the floor."""
    from offerloop.policies import CalibratedThompson

    offers = ["a:x", "b:x", "c:x"]
    model = _Known(offers, [1.0, 0.9, 0.5])
    buckets = [["spend_total", [0.0]]]
    spec = [{"name": "spend_total", "type": "float", "default": 0.0}]
    model.encoder = Encoder(spec)  # type: ignore[attr-defined]
    policy = CalibratedThompson(offers, model, buckets, [10.0] * 3, floor=0.03, draws=400)

    def log(shown: dict[str, tuple[int, int]]) -> LoggedData:
        rows, logged, rewards = [], [], []
        for offer, (n, bought) in shown.items():
            rows += [{"spend_total": 0.0}] * n
            logged += [offer] * n
            rewards += [10.0] * bought + [0.0] * (n - bought)
        return LoggedData(
            rows, logged, np.array(rewards), np.full(len(rows), 1 / 3), np.zeros(len(rows))
        )

    policy.fit(log({"a:x": (2000, 200), "c:x": (2000, 100)}))
    p = policy.act({"spend_total": 0.0})
    assert p[1] > 0.3  # never shown: its chance of being the best is real
    assert p[0] > 0.3
    assert p[2] == pytest.approx(0.01)  # well checked and worse: the floor only
    assert np.array_equal(p, policy.act({"spend_total": 0.0}))  # the same row, the same numbers
    policy.fit(log({"a:x": (2000, 200), "b:x": (2000, 120), "c:x": (2000, 100)}))
    p = policy.act({"spend_total": 0.0})
    assert p[1] < 0.05  # 120 bought where the model expected 180: now known to be worse
    assert p[0] > 0.9


def test_softmax_keeps_its_floor(logged: LoggedData) -> None:
    from offerloop.policies import GBTPurchase, Softmax

    c = campaign()
    model = GBTPurchase(c.offer_ids, [o.price for o in c.offers], _enc(), n_estimators=20)
    probs = Softmax(c.offer_ids, model, 0.05, floor=0.004).fit(logged).act_batch(logged.features)
    assert probs.min() >= 0.004 - 1e-12


def test_purchase_trees_are_extremely_randomised(logged: LoggedData) -> None:
    """purchase_gbt draws its split thresholds at random unless told otherwise (more of the
    oracle from the loop's few purchases); gbt does not; the choice travels in the artifact."""
    from offerloop.policies import GBTPurchase, GBTRevenue

    c = campaign()
    prices = [o.price for o in c.offers]
    assert GBTPurchase(c.offer_ids, prices, _enc()).extra_trees
    assert not GBTRevenue(c.offer_ids, prices, _enc()).extra_trees
    for extra in (True, False):
        model = GBTPurchase(c.offer_ids, prices, _enc(), n_estimators=20, extra_trees=extra)
        policy = EpsilonGreedy(c.offer_ids, model.fit(logged), epsilon=0.1)
        assert model.booster is not None
        assert ("[extra_trees: 1]" in model.booster.model_to_string()) is extra
        data = dump_policy(policy)
        loaded = load_policy(data, sha256(data))
        assert isinstance(loaded, EpsilonGreedy)
        assert loaded.model.get_params()["extra_trees"] is extra
        assert np.array_equal(loaded.act_batch(logged.features), policy.act_batch(logged.features))


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
    # a model that forgets rests on the recent rows only: it keeps exploring as if it had
    # that many (the sum of the rows' recency weights)
    span = float(logged.ts.max() - logged.ts.min())
    forgets = LinearRevenue(c.offer_ids, encoder=_enc(), half_life=span / 8)
    recent = InverseGap(c.offer_ids, forgets, 1.0, 0.02).fit(logged)
    weights = 0.5 ** ((logged.ts.max() - logged.ts) / (span / 8))
    assert recent.gamma == pytest.approx(np.sqrt(k * weights.sum()))
    assert recent.gamma < policy.gamma / 2


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
            system.deployments.release(rec.version, actor="t")  # never released either
    finally:
        system.close()


_BUCKETS = [["spend_total", [0.0, 20.0, 60.0]], ["hours_since_purchase", [36.0]], ["platform", []]]


def _thompson(floor: float = 0.02) -> Policy:
    from offerloop.policies import BucketBeta, ThompsonSampling

    c = campaign()
    model = BucketBeta(c.offer_ids, [o.price for o in c.offers], _enc(), _BUCKETS)
    return ThompsonSampling(c.offer_ids, model, floor=floor, draws=2000)


class TestThompsonSampling(PolicyConformance):
    @pytest.fixture
    def policy(self) -> Policy:
        return _thompson()


def test_thompson_matches_the_posterior_chance_of_being_best() -> None:
    """One bucket where the dearest offer sold 40 of 100 times and every other offer 0 of 100:
    that offer is nearly always the best draw, the others keep the floor."""
    c = campaign()
    k = len(c.offer_ids)
    row = {"spend_total": 100.0, "hours_since_purchase": 5.0, "platform": "ios"}
    shows = 100 * k
    offers = [o for o in c.offer_ids for _ in range(100)]
    rewards = np.zeros(shows)
    first = int(np.argmax([o.price for o in c.offers]))
    rewards[first * 100 : first * 100 + 40] = 1.0
    data = LoggedData([row] * shows, offers, rewards, np.full(shows, 1 / k), np.zeros(shows))
    policy = _thompson(floor=0.05).fit(data)
    p = policy.act(row)
    assert p.sum() == pytest.approx(1.0)
    assert p[first] > 0.9
    assert p.min() >= 0.05 / k - 1e-12
    # the same row gets the same probabilities from a fresh load of the artifact
    blob = dump_policy(policy)
    np.testing.assert_array_equal(load_policy(blob, sha256(blob)).act(row), p)
    # any number of unseen feature values share the prior's probabilities
    many = policy.act_batch([{**row, "platform": f"p{i}"} for i in range(50)])
    assert (many == many[0]).all()
    # a bucket it has never seen: the prior alone, where a dearer offer's sampled revenue
    # wins more often (each theta is Uniform(0, 1))
    unseen = policy.act({"spend_total": 0.0, "hours_since_purchase": 100.0, "platform": "x"})
    prices = np.array([o.price for o in c.offers])
    assert unseen[prices == prices.max()].sum() > 0.9
    assert unseen[int(prices.argmin())] == pytest.approx(0.05 / k, abs=0.01)


def test_thompson_learns_to_beat_random() -> None:
    data, _, _world = logged_data(6000, seed=11)
    policy = _thompson().fit(data)
    test, expected, _ = logged_data(3000, seed=12)
    value = (policy.act_batch(test.features) * expected).sum(axis=1).mean()
    assert value > 1.5 * expected.mean()


def test_thompson_buckets_are_checked() -> None:
    from offerloop import InvalidInput, load_settings
    from offerloop.features import Encoder, load_features
    from offerloop.pipeline import make_policy
    from offerloop.policies import BucketBeta

    with pytest.raises(InvalidInput, match="thompson_buckets"):
        load_settings(env={}, thompson_buckets="spend_total:20,0")
    s = load_settings(env={}, thompson_buckets="no_such_feature platform")
    with pytest.raises(InvalidInput, match="no_such_feature"):
        make_policy("thompson", campaign(), Encoder.of(load_features()), s)
    c = campaign()
    model = BucketBeta(c.offer_ids, [], _enc(), _BUCKETS)
    k = len(c.offer_ids)
    with pytest.raises(ValueError, match="wins <= shows"):
        model.load_state({"buckets": {"0|0|ios": {"wins": [2.0] * k, "shows": [1.0] * k}}})
