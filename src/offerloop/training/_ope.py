"""Off-policy evaluation: what a policy would earn per decision, from logs of another.

* ``snips``: self-normalised inverse propensity scoring;
* ``doubly_robust``: a reward model's prediction for every offer, corrected on the logged offer
  by the importance-weighted residual — unbiased if either the propensities or the reward
  model are right, and far less noisy than IPS when revenue is rare and large;
* ``compare``: the paired difference of two policies on the same rows (the release gate).

Each returns a 95 % normal interval and the effective sample size of the importance weights.
Propensities must lie in (0, 1]; anything else is a clear error, never a silent drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from offerloop._errors import InvalidInput
from offerloop.policies import LoggedData, Policy, RewardModel

__all__ = [
    "Estimate",
    "compare",
    "doubly_robust",
    "dr_terms",
    "evaluate",
    "snips",
    "target_probabilities",
]

Z95 = 1.959963984540054
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A value per decision with its standard error; ``lower``/``upper`` bound a 95 % interval."""

    value: float
    se: float
    ess: float
    n: int

    @property
    def lower(self) -> float:
        return self.value - Z95 * self.se

    @property
    def upper(self) -> float:
        return self.value + Z95 * self.se

    def lower_bound(self, confidence: float = 0.95) -> float:
        """Lower end of the two-sided ``confidence`` interval (normal approximation)."""
        if not 0.0 < confidence < 1.0:
            raise ValueError("confidence must be strictly between 0 and 1")
        return self.value - NormalDist().inv_cdf(0.5 + confidence / 2.0) * self.se

    def as_dict(self) -> dict[str, float]:
        return {
            "value": self.value,
            "se": self.se,
            "lower": self.lower,
            "upper": self.upper,
            "ess": self.ess,
            "n": float(self.n),
        }


def _check_propensities(p: Floats) -> Floats:
    p = np.asarray(p, dtype=np.float64)
    if len(p) == 0:
        raise InvalidInput("no logged decisions to evaluate on")
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInput(f"propensity of row {i} is {p[i]!r}; every propensity must be in (0, 1]")
    return p


def _offer_columns(offers: list[str], logged: list[str] | tuple[str, ...]) -> NDArray[np.int64]:
    index = {o: i for i, o in enumerate(offers)}
    missing = sorted({o for o in logged if o not in index})
    if missing:
        raise InvalidInput(f"logged offers unknown to the policy: {', '.join(missing[:5])}")
    return np.array([index[o] for o in logged], dtype=np.int64)


def target_probabilities(policy: Policy, data: LoggedData) -> Floats:
    """The policy's probability of each logged offer."""
    probs = policy.act_batch(data.features)
    cols = _offer_columns(policy.offers, list(data.offers))
    out: Floats = probs[np.arange(len(cols)), cols]
    return out


def _ess(w: Floats) -> float:
    s2 = float(np.sum(w**2))
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def _mean_ci(terms: Floats, w: Floats) -> Estimate:
    n = len(terms)
    value = float(terms.mean())
    se = float(terms.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(value, se, _ess(w), n)


def snips(target: Floats, propensities: Floats, rewards: Floats) -> Estimate:
    p = _check_propensities(propensities)
    n = len(p)
    w = np.asarray(target, dtype=np.float64) / p
    total = float(w.sum())
    if total <= 0:
        return Estimate(0.0, math.inf, 0.0, n)
    value = float(np.dot(w, rewards) / total)
    se = math.sqrt(float(np.sum((w * (rewards - value)) ** 2))) / total
    return Estimate(value, se, _ess(w), n)


def dr_terms(policy: Policy, model: RewardModel, data: LoggedData) -> tuple[Floats, Floats]:
    """Per-row doubly robust terms and importance weights of ``policy``."""
    p = _check_propensities(data.propensities)
    probs = policy.act_batch(data.features)
    q = model.predict_batch(data.features)
    rows = np.arange(len(p))
    cols = _offer_columns(policy.offers, list(data.offers))
    w = probs[rows, cols] / p
    terms: Floats = (probs * q).sum(axis=1) + w * (data.rewards - q[rows, cols])
    return terms, w


def doubly_robust(policy: Policy, model: RewardModel, data: LoggedData) -> Estimate:
    terms, w = dr_terms(policy, model, data)
    return _mean_ci(terms, w)


def compare(
    candidate: Policy, baseline: Policy, model: RewardModel, data: LoggedData
) -> tuple[Estimate, Estimate, Estimate]:
    """Doubly robust estimates of both policies and of their paired difference (cand − base)."""
    tc, wc = dr_terms(candidate, model, data)
    tb, wb = dr_terms(baseline, model, data)
    return _mean_ci(tc, wc), _mean_ci(tb, wb), _mean_ci(tc - tb, wc)


def evaluate(policy: Policy, data: LoggedData) -> Estimate:
    return snips(target_probabilities(policy, data), data.propensities, data.rewards)
