"""The policy conformance suite: every policy class must pass it.

Subclass :class:`PolicyConformance` and provide a ``policy`` fixture (unfitted) and a
``logged`` fixture (:class:`~offerloop.policies.LoggedData` for the same offers).
"""

from __future__ import annotations

import numpy as np

from offerloop.policies import LoggedData, Policy, dump_policy, load_policy, sha256

__all__ = ["PolicyConformance"]


class PolicyConformance:
    def test_probabilities_cover_every_offer_and_sum_to_one(
        self, policy: Policy, logged: LoggedData
    ) -> None:
        policy.fit(logged)
        probs = policy.act_batch(logged.features[:50])
        assert probs.shape == (min(50, len(logged)), len(policy.offers))
        assert np.isfinite(probs).all()
        assert (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(policy.act(logged.features[0]), probs[0], atol=1e-12)

    def test_clone_is_unfitted_with_same_params(self, policy: Policy, logged: LoggedData) -> None:
        fitted = policy.clone().fit(logged)
        fresh = fitted.clone()
        assert type(fresh) is type(policy)
        assert fresh.get_params().keys() == policy.get_params().keys()
        again = fresh.fit(logged)
        np.testing.assert_allclose(
            again.act_batch(logged.features[:20]), fitted.act_batch(logged.features[:20])
        )

    def test_artifact_round_trip(self, policy: Policy, logged: LoggedData) -> None:
        policy.fit(logged)
        data = dump_policy(policy)
        back = load_policy(data, sha256(data))
        np.testing.assert_allclose(
            back.act_batch(logged.features[:20]), policy.act_batch(logged.features[:20])
        )
        assert dump_policy(back) == data
