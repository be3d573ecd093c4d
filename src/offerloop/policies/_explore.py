"""Exploration wrappers: turn a reward model's predictions into probabilities for every offer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.policies._base import FeatureRow, Floats, LoggedData, Policy, RewardModel

__all__ = ["EpsilonGreedy", "InverseGap", "Softmax"]


class EpsilonGreedy(Policy):
    """Best predicted offer with probability 1 - epsilon (split among ties), plus epsilon spread
    uniformly: every offer keeps a known propensity of at least epsilon / n_offers."""

    kind = "epsilon_greedy"

    def __init__(self, offers: Sequence[str], model: RewardModel, epsilon: float = 0.1) -> None:
        super().__init__(offers)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be between 0 and 1")
        if list(model.offers) != self.offers:
            raise ValueError("the reward model's offers differ from the policy's")
        self.model = model
        self.epsilon = float(epsilon)

    def get_params(self) -> dict[str, Any]:
        return {"offers": list(self.offers), "model": self.model, "epsilon": self.epsilon}

    def clone(self) -> Self:
        """Unfitted, with the same parameters and a fresh reward model of the same kind."""
        model = type(self.model)(**self.model.get_params())
        return type(self)(**{**self.get_params(), "model": model})

    def fit(self, data: LoggedData) -> Self:
        self.model.fit(data)
        return self

    def act(self, features: FeatureRow) -> Floats:
        out: Floats = self.act_batch([features])[0]
        return out

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        scores = self.model.predict_batch(rows)
        k = scores.shape[1]
        best = scores >= scores.max(axis=1, keepdims=True) - 1e-12
        greedy = best / best.sum(axis=1, keepdims=True)
        out: NDArray[np.float64] = (1.0 - self.epsilon) * greedy + self.epsilon / k
        return out

    def state(self) -> dict[str, Any]:
        """The reward model's kind, parameters and fitted state: the artifact rebuilds it."""
        return {
            "model_kind": self.model.kind,
            "model_params": self.model.get_params(),
            "model_state": self.model.state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.model.load_state(state["model_state"])

    def compile(self, cache_dir: Path) -> int:
        return self.model.compile(cache_dir)


class Softmax(EpsilonGreedy):
    """Probabilities proportional to ``exp(score / temperature)``, mixed with a uniform floor:
    every offer keeps at least ``floor``; offers that score nearly as well as the best keep
    much more, which makes later off-policy evaluation of similar models far less noisy than
    epsilon-greedy."""

    kind = "softmax"

    def __init__(
        self,
        offers: Sequence[str],
        model: RewardModel,
        temperature: float = 0.2,
        floor: float = 0.005,
    ) -> None:
        super().__init__(offers, model, epsilon=0.0)
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0.0 <= floor * len(offers) < 1.0:
            raise ValueError("floor × number of offers must be below 1")
        self.temperature = float(temperature)
        self.floor = float(floor)

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "model": self.model,
            "temperature": self.temperature,
            "floor": self.floor,
        }

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        scores = self.model.predict_batch(rows) / self.temperature
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        soft = z / z.sum(axis=1, keepdims=True)
        k = soft.shape[1]
        out: NDArray[np.float64] = (1.0 - self.floor * k) * soft + self.floor
        return out


class InverseGap(EpsilonGreedy):
    """SquareCB's inverse-gap weighting (Foster & Rakhlin, 2020), mixed with a uniform floor.

    For predicted revenues ``y`` with best offer ``b``, every other offer ``a`` gets
    ``1 / (k + gamma * (y[b] - y[a]))`` and ``b`` the rest; then ``floor`` (a total share)
    is spread uniformly on top. Offers the model thinks nearly as good as the best are tried
    often, offers it thinks far worse rarely, and the expected cost of exploring is at most
    ``k / gamma`` per decision. ``gamma`` grows with the data the model was fitted on,
    ``gamma_scale * sqrt(k * rows)`` (set by :meth:`fit`; ``rows`` is the sum of the rows'
    recency weights for a model that forgets): exploration shrinks as the model learns, and
    stays wider for a model that keeps only the recent past, instead of a fixed epsilon for
    ever. Every offer keeps at least ``floor / k``, and
    the probabilities are exact, so the logged propensities are the served ones.
    """

    kind = "squarecb"

    def __init__(
        self,
        offers: Sequence[str],
        model: RewardModel,
        gamma_scale: float = 1.0,
        floor: float = 0.02,
        gamma: float = 0.0,
    ) -> None:
        super().__init__(offers, model, epsilon=0.0)
        if gamma_scale <= 0:
            raise ValueError("gamma_scale must be > 0")
        if not 0.0 <= floor < 1.0:
            raise ValueError("floor must be in [0, 1)")
        if gamma < 0:
            raise ValueError("gamma must be >= 0")
        self.gamma_scale = float(gamma_scale)
        self.floor = float(floor)
        self.gamma = float(gamma)  # 0 until fitted: uniform

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "model": self.model,
            "gamma_scale": self.gamma_scale,
            "floor": self.floor,
            "gamma": self.gamma,
        }

    def clone(self) -> Self:
        """Unfitted: ``gamma`` is set by :meth:`fit`, so it is not copied."""
        model = type(self.model)(**self.model.get_params())
        return type(self)(self.offers, model, self.gamma_scale, self.floor)

    def fit(self, data: LoggedData) -> Self:
        """Fit the reward model, then set ``gamma`` from the rows the fit rests on."""
        self.model.fit(data)
        rows = self.model.effective_rows(data)  # a recency-weighted fit rests on fewer
        self.gamma = self.gamma_scale * math.sqrt(len(self.offers) * max(rows, 1.0))
        return self

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        scores = self.model.predict_batch(rows)
        n, k = scores.shape
        best = np.argmax(scores, axis=1)
        gap = scores[np.arange(n), best][:, None] - scores
        p = 1.0 / (k + self.gamma * np.maximum(gap, 0.0))
        p[np.arange(n), best] = 0.0
        p[np.arange(n), best] = 1.0 - p.sum(axis=1)
        out: NDArray[np.float64] = (1.0 - self.floor) * p + self.floor / k
        return out
