"""The policy conformance suite: every policy kind and every reward model must pass it.

The suite runs over the registries themselves (``offerloop.policies.POLICIES``, ``WRAPPERS``
and ``REWARD_MODELS``, the kinds an artifact can hold): :func:`policy_cases` builds one
example of every plain policy kind and one of every wrapper over every reward model it
accepts. A kind registered without an example here makes :func:`policy_cases` fail, so a
new policy or reward model cannot skip the suite.

For a policy of your own, subclass :class:`PolicyConformance` and provide a ``policy``
fixture (unfitted) and a ``logged`` fixture (:class:`~offerloop.policies.LoggedData` for the
same offers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from offerloop.campaigns import Campaign
from offerloop.policies import (
    ELIGIBLE,
    POLICIES,
    REWARD_MODELS,
    WRAPPERS,
    BucketBeta,
    CalibratedThompson,
    EpsilonGreedy,
    FixedPolicy,
    GBTPurchase,
    GBTRevenue,
    InverseGap,
    LinearRevenue,
    LoggedData,
    Policy,
    RandomPolicy,
    RewardModel,
    RulesPolicy,
    Softmax,
    ThompsonSampling,
    dump_policy,
    load_policy,
    sha256,
)

__all__ = ["PolicyCase", "PolicyConformance", "policy_cases"]

Spec = Sequence[Mapping[str, Any]]
_BUCKETS: list[list[Any]] = [["spend_total", [0.0, 20.0]], ["platform", []]]


def _prices(c: Campaign) -> list[float]:
    return [float(o.price) for o in c.offers]


# one small example of each registered kind (small: the suite fits each several times)
_PLAIN: dict[str, Callable[[Campaign], Policy]] = {
    RandomPolicy.kind: lambda c: RandomPolicy(c.offer_ids),
    RulesPolicy.kind: lambda c: RulesPolicy.from_campaign(c, explore=0.2),
    FixedPolicy.kind: lambda c: FixedPolicy(c.offer_ids, [1.0] + [0.0] * (len(c.offers) - 1)),
}
_MODELS: dict[str, Callable[[Campaign, Spec], RewardModel]] = {
    LinearRevenue.kind: lambda c, enc: LinearRevenue(c.offer_ids, alpha=2.0),
    GBTRevenue.kind: lambda c, enc: GBTRevenue(c.offer_ids, _prices(c), enc, n_estimators=20),
    GBTPurchase.kind: lambda c, enc: GBTPurchase(c.offer_ids, _prices(c), enc, n_estimators=20),
    BucketBeta.kind: lambda c, enc: BucketBeta(c.offer_ids, _prices(c), enc, _BUCKETS),
}
_WRAPPERS: dict[str, Callable[[Campaign, RewardModel], Policy]] = {
    EpsilonGreedy.kind: lambda c, m: EpsilonGreedy(c.offer_ids, m, epsilon=0.1),
    Softmax.kind: lambda c, m: Softmax(c.offer_ids, m, temperature=0.3, floor=0.004),
    InverseGap.kind: lambda c, m: InverseGap(c.offer_ids, m, gamma_scale=0.5, floor=0.02),
    ThompsonSampling.kind: lambda c, m: ThompsonSampling(c.offer_ids, m, floor=0.05),
    CalibratedThompson.kind: lambda c, m: CalibratedThompson(
        c.offer_ids, m, _BUCKETS, _prices(c), floor=0.05
    ),
}


@dataclass(frozen=True)
class PolicyCase:
    """One example policy of the suite: its kind, its reward model's kind (wrappers), and a
    constructor of a fresh, unfitted instance."""

    kind: str
    model_kind: str | None
    build: Callable[[], Policy]

    @property
    def name(self) -> str:
        """The case's test id: ``kind``, or ``kind[model_kind]`` for a wrapper."""
        return self.kind if self.model_kind is None else f"{self.kind}[{self.model_kind}]"


def policy_cases(campaign: Campaign, encoder_spec: Spec) -> list[PolicyCase]:
    """Every registered policy kind, wrappers over every reward model they accept (a wrapper
    that refuses a model says so with ``ValueError`` on construction, and that pair is left
    out). Raises ``LookupError`` for a registered kind without an example here, or for a
    wrapper or reward model no case exercises."""
    missing = (
        {k for k in POLICIES if k not in WRAPPERS} - set(_PLAIN)
        | set(WRAPPERS) - set(_WRAPPERS)
        | set(REWARD_MODELS) - set(_MODELS)
    )
    if missing:
        raise LookupError(
            f"no conformance example for {sorted(missing)}: add one to offerloop.testing"
        )
    cases = [PolicyCase(k, None, lambda k=k: _PLAIN[k](campaign)) for k in _PLAIN]  # type: ignore[misc]
    covered: set[str] = set()
    for wk in WRAPPERS:
        for mk in REWARD_MODELS:

            def build(wk: str = wk, mk: str = mk) -> Policy:
                return _WRAPPERS[wk](campaign, _MODELS[mk](campaign, encoder_spec))

            try:
                build()
            except ValueError:  # this wrapper does not take this kind of model
                continue
            covered |= {wk, mk}
            cases.append(PolicyCase(wk, mk, build))
    if uncovered := (set(WRAPPERS) | set(REWARD_MODELS)) - covered:
        raise LookupError(f"no conformance case exercises {sorted(uncovered)}")
    return cases


class PolicyConformance:
    """The contract of a policy: probabilities over every offer that sum to one, the same
    row by row as in a batch; an unfitted clone that refits to the same answers; an artifact
    that loads back to the same answers and bytes."""

    def test_probabilities_cover_every_offer_and_sum_to_one(
        self, policy: Policy, logged: LoggedData
    ) -> None:
        """Probabilities are finite, non-negative and sum to 1; one row's match the batch's."""
        policy.fit(logged)
        probs = policy.act_batch(logged.features[:50])
        assert probs.shape == (min(50, len(logged)), len(policy.offers))
        assert np.isfinite(probs).all()
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(policy.act(logged.features[0]), probs[0], atol=1e-12)

    def test_eligible_offers_only_and_in_proportion(
        self, policy: Policy, logged: LoggedData
    ) -> None:
        """On a row that may show only some offers, the probabilities a decision draws from
        (``act_eligible``) are the policy's own among them, renormalised; rows without the
        restriction are unchanged."""
        policy.fit(logged)
        rows = list(logged.features[:20])
        allowed = policy.offers[::3]  # every third offer
        marked = [{**r, ELIGIBLE: allowed} if i % 2 else r for i, r in enumerate(rows)]
        plain = policy.act_batch(rows)
        got = policy.act_eligible(marked)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-9)
        mask = np.array([o in allowed for o in policy.offers])
        for i in range(len(rows)):
            if i % 2 == 0:
                np.testing.assert_allclose(got[i], plain[i], atol=1e-12)
                continue
            assert (got[i][~mask] == 0).all()
            inside = plain[i][mask]
            want = (
                inside / inside.sum() if inside.sum() > 0 else np.full(mask.sum(), 1 / mask.sum())
            )
            np.testing.assert_allclose(got[i][mask], want, atol=1e-9)

    def test_clone_is_unfitted_with_same_params(self, policy: Policy, logged: LoggedData) -> None:
        """A fitted policy's clone has its type and parameters and refits to the same answers."""
        fitted = policy.clone().fit(logged)
        fresh = fitted.clone()
        assert type(fresh) is type(policy)
        assert fresh.get_params().keys() == policy.get_params().keys()
        again = fresh.fit(logged)
        np.testing.assert_allclose(
            again.act_batch(logged.features[:20]), fitted.act_batch(logged.features[:20])
        )

    def test_artifact_round_trip(self, policy: Policy, logged: LoggedData) -> None:
        """An artifact loads back to the same probabilities and dumps to the same bytes."""
        policy.fit(logged)
        data = dump_policy(policy)
        back = load_policy(data, sha256(data))
        np.testing.assert_allclose(
            back.act_batch(logged.features[:20]), policy.act_batch(logged.features[:20])
        )
        assert dump_policy(back) == data

    def test_reward_model_predicts_every_offer_and_scores_held_out_rows(
        self, policy: Policy, logged: LoggedData
    ) -> None:
        """A wrapper's reward model predicts every offer finitely and has a finite loss."""
        if not isinstance(policy, EpsilonGreedy):
            return  # not a policy over a reward model
        policy.fit(logged)
        pred = policy.model.predict_batch(logged.features[:30])
        assert pred.shape == (min(30, len(logged)), len(policy.offers))
        assert np.isfinite(pred).all()
        assert np.isfinite(policy.model.loss(logged))
