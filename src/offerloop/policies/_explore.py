"""Exploration wrappers: turn a reward model's predictions into probabilities for every offer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.policies._base import FeatureRow, Floats, LoggedData, Policy, RewardModel

__all__ = ["EpsilonGreedy", "Softmax"]


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
        model = type(self.model)(**self.model.get_params())
        return type(self)(offers=self.offers, model=model, epsilon=self.epsilon)

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

    def clone(self) -> Self:
        model = type(self.model)(**self.model.get_params())
        return type(self)(self.offers, model, self.temperature, self.floor)

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        scores = self.model.predict_batch(rows) / self.temperature
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        soft = z / z.sum(axis=1, keepdims=True)
        k = soft.shape[1]
        out: NDArray[np.float64] = (1.0 - self.floor * k) * soft + self.floor
        return out
