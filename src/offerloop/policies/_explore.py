"""Exploration wrappers: turn a reward model's predictions into probabilities for every offer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.policies._base import FeatureRow, Floats, LoggedData, Policy, RewardModel

__all__ = ["EpsilonGreedy"]


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
