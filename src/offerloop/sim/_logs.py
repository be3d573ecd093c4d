"""Logged bandit data with a known truth: the world the estimators' coverage is measured on.

Rows fall in ``groups`` observable contexts; each of ``offers`` offers has a price and, per
context, a purchase rate (rare: the mean rate is ``rate``, a few offers sell several times
better in some contexts). A skewed logging policy (softmax of random scores at ``skew``)
chooses; the evaluated policies and the judges are derived from the world as a learner would
see it. Everything is numpy and seeded, so one repetition takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

__all__ = ["BanditLog", "BanditWorld", "Coverage", "coverage"]

Floats = NDArray[np.float64]


def _softmax(x: Floats) -> Floats:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out: Floats = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class BanditLog:
    """One logged sample: per row the context, the logged offer, its propensity, the reward."""

    group: NDArray[np.int64]
    logged: NDArray[np.int64]
    propensity: Floats
    reward: Floats


class BanditWorld:
    def __init__(
        self,
        groups: int = 20,
        offers: int = 10,
        rate: float = 0.01,
        skew: float = 2.0,
        priced: bool = True,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.groups, self.offers = groups, offers
        self.weights = rng.dirichlet(np.full(groups, 2.0))  # how common each context is
        lift = rng.lognormal(0.0, 1.0, size=(groups, offers))
        self.rate = np.clip(rate * lift / lift.mean(), 0.0, 0.5)  # purchase rate per context
        self.price = (
            rng.choice([1.0, 2.0, 5.0, 10.0, 20.0], size=offers) if priced else np.ones(offers)
        )
        self.value = self.rate * self.price  # expected reward of each (context, offer)
        self.logging = _softmax(skew * rng.standard_normal((groups, offers)))

    @property
    def reward_max(self) -> float:
        return float(self.price.max())

    def sample(self, n: int, rng: np.random.Generator) -> BanditLog:
        g = rng.choice(self.groups, size=n, p=self.weights)
        cum = self.logging[g].cumsum(axis=1)
        a = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), self.offers - 1)
        bought = rng.random(n) < self.rate[g, a]
        return BanditLog(g, a, self.logging[g, a], np.where(bought, self.price[a], 0.0))

    def truth(self, policy: Floats) -> float:
        """The expected reward per decision of ``policy`` (groups × offers probabilities)."""
        return float(self.weights @ (policy * self.value).sum(axis=1))

    def learned(self, noise: float, epsilon: float, rng: np.random.Generator) -> Floats:
        """A near-greedy policy on a noisy view of the values (what a learner would serve)."""
        seen = self.value * rng.lognormal(0.0, noise, size=self.value.shape)
        best = np.zeros_like(seen)
        best[np.arange(self.groups), seen.argmax(axis=1)] = 1.0
        out: Floats = (1.0 - epsilon) * best + epsilon / self.offers
        return out

    def judge(self, kind: str, rng: np.random.Generator, rows: int = 2000) -> Floats:
        """A reward model: ``fitted`` (cell means of an independent uniform sample, shrunk),
        ``biased`` (the truth × 1.6), ``constant`` (one mean for everything)."""
        if kind == "biased":
            out: Floats = self.value * 1.6
            return out
        if kind == "constant":
            flat: Floats = np.full_like(self.value, float(self.value.mean()))
            return flat
        g = rng.choice(self.groups, size=rows, p=self.weights)
        a = rng.integers(0, self.offers, size=rows)
        r = np.where(rng.random(rows) < self.rate[g, a], self.price[a], 0.0)
        total, count = np.zeros_like(self.value), np.zeros_like(self.value)
        np.add.at(total, (g, a), r)
        np.add.at(count, (g, a), 1.0)
        prior = float(r.mean()) if rows else 0.0
        fitted: Floats = (total + 5.0 * prior) / (count + 5.0)
        return fitted


@dataclass(frozen=True)
class Coverage:
    """How often each estimator's interval held the truth over repeated logs."""

    estimator: str
    covered: float  # share of repetitions whose interval held the true value
    normal_covered: float  # the same for value ± z·se (the normal approximation)
    width: float  # mean interval width / true value
    thin: float  # share of repetitions flagged as thin evidence


def coverage(
    world: BanditWorld,
    rows: int,
    repetitions: int,
    judge: str,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[Coverage]:
    """Repeat: log ``rows`` decisions, estimate a near-greedy policy's value (and its paired
    difference from uniform) with every estimator, count the intervals that hold the truth."""
    from offerloop.training import ESTIMATORS, compare_arrays, estimate_arrays

    rng = np.random.default_rng(seed)
    policy = world.learned(0.5, 0.05, rng)
    uniform = np.full_like(policy, 1.0 / world.offers)
    q = world.judge(judge, rng)
    truth = world.truth(policy)
    uplift = truth - world.truth(uniform)  # the paired difference's true value
    names = [*ESTIMATORS, "paired"]
    hits = dict.fromkeys(names, 0)
    normal = dict.fromkeys(names, 0)
    width = dict.fromkeys(names, 0.0)
    thin = dict.fromkeys(names, 0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    for _ in range(repetitions):
        log = world.sample(rows, rng)
        qq = q[log.group]
        var = qq[np.arange(rows), log.logged] * world.price[log.logged]
        est = estimate_arrays(
            policy[log.group], log.logged, log.propensity, log.reward, qq, var, world.reward_max
        )
        est["paired"] = compare_arrays(
            policy[log.group],
            uniform[log.group],
            log.logged,
            log.propensity,
            log.reward,
            qq,
            var,
            world.reward_max,
        )
        for name, e in est.items():
            t = uplift if name == "paired" else truth
            lo, hi = e.interval(confidence)
            hits[name] += lo <= t <= hi
            normal[name] += abs(e.value - t) <= z * e.se
            width[name] += (hi - lo) / max(abs(truth), 1e-12)
            thin[name] += not e.usable
    return [
        Coverage(
            n,
            hits[n] / repetitions,
            normal[n] / repetitions,
            width[n] / repetitions,
            thin[n] / repetitions,
        )
        for n in names
    ]
