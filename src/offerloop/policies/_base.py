"""The one contract every policy follows.

* The constructor only stores parameters (``get_params()`` returns them; ``clone()`` makes an
  unfitted copy), so re-training on new data is ``policy.clone().fit(data)``.
* ``fit(data)`` learns from logged bandit data (features, shown offer, reward, propensity).
* ``act(features)`` returns a probability for every offer of the campaign, in campaign order;
  they are non-negative and sum to 1. The probability of the offer shown is the propensity
  logged with the decision.
* ``state()`` returns the fitted state as JSON-able data; with ``get_params()`` it is the whole
  artifact (see ``offerloop.policies._artifact``), never a pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.campaigns import offer_keys
from offerloop.features import Encoder, load_features
from offerloop.policies._eligible import restrict

__all__ = ["FeatureRow", "LoggedData", "Policy", "RewardModel", "log_loss", "recency_weights"]

FeatureRow = Mapping[str, Any]
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class LoggedData:
    """Logged bandit feedback: one row per decision whose reward is final."""

    features: Sequence[FeatureRow]
    offers: Sequence[str]  # the offer shown
    rewards: Floats
    propensities: Floats
    ts: Floats

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (
            len(self.offers) == len(self.rewards) == len(self.propensities) == len(self.ts) == n
        ):
            raise ValueError("LoggedData columns differ in length")

    def __len__(self) -> int:
        return len(self.features)

    def take(self, index: Sequence[int] | NDArray[np.int64]) -> LoggedData:
        """The rows at these positions, in this order."""
        idx = np.asarray(index, dtype=np.int64)
        return LoggedData(
            features=[self.features[i] for i in idx],
            offers=[self.offers[i] for i in idx],
            rewards=self.rewards[idx],
            propensities=self.propensities[idx],
            ts=self.ts[idx],
        )

    @classmethod
    def concat(cls, parts: Sequence[LoggedData]) -> LoggedData:
        """The rows of every part, one part after another."""
        return cls(
            features=[f for p in parts for f in p.features],
            offers=[o for p in parts for o in p.offers],
            rewards=np.concatenate([p.rewards for p in parts]),
            propensities=np.concatenate([p.propensities for p in parts]),
            ts=np.concatenate([p.ts for p in parts]),
        )


class Policy:
    """Base class: parameters in, probabilities over ``offers`` out."""

    kind: ClassVar[str] = ""

    def __init__(self, offers: Sequence[str]) -> None:
        self.offers = list(offers)

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments: ``type(self)(**get_params())`` is an unfitted copy."""
        return {"offers": list(self.offers)}

    def clone(self) -> Self:
        """An unfitted copy with the same parameters."""
        return type(self)(**self.get_params())

    def fit(self, data: LoggedData) -> Self:
        """Learn from logged bandit data; returns ``self``. Policies that need no data ignore it."""
        return self

    def act(self, features: FeatureRow) -> Floats:
        """The probability of every offer for one feature row, in campaign order: non-negative
        and summing to 1. The probability of the offer shown is the propensity logged with it."""
        raise NotImplementedError

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        """Probabilities for many rows: shape (len(rows), len(offers))."""
        if not rows:
            return np.zeros((0, len(self.offers)))
        return np.vstack([self.act(r) for r in rows])

    def act_eligible(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        """What a decision on each row draws from: :meth:`act_batch` restricted to the row's
        eligible offers (``policies._eligible``). Every evaluation of a policy on logged rows
        uses this, so it scores the policy as it would have served."""
        return restrict(self.act_batch(rows), rows, self.offers)

    def state(self) -> dict[str, Any]:
        """The fitted state as JSON-able data (``{}``: nothing fitted)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state()`` returned (fitted values)."""

    def compile(self, cache_dir: Path) -> int:
        """Prepare to serve: compile models to native code where possible (same outputs,
        checked); returns how many were compiled. Most policies have nothing to compile."""
        return 0


class RewardModel:
    """Predicts the expected reward of every offer; exploration wrappers turn it into a policy."""

    kind: ClassVar[str] = ""

    def __init__(self, offers: Sequence[str]) -> None:
        self.offers = list(offers)

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments: ``type(self)(**get_params())`` is an unfitted copy."""
        return {"offers": list(self.offers)}

    def fit(self, data: LoggedData) -> Self:
        """Learn from logged bandit data; returns ``self``."""
        raise NotImplementedError

    def predict_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        """Expected reward of every offer for each row: shape (len(rows), len(offers))."""
        raise NotImplementedError

    def predict(self, features: FeatureRow) -> Floats:
        """Expected reward of every offer for one feature row, in campaign order."""
        out: Floats = self.predict_batch([features])[0]
        return out

    def effective_rows(self, data: LoggedData) -> float:
        """How many rows of ``data`` the fit rests on: all of them, or the sum of their
        recency weights for a model with a ``half_life`` (what its confidence should grow
        with)."""
        w = recency_weights(data.ts, float(getattr(self, "half_life", 0.0)))
        return float(len(data)) if w is None else float(w.sum())

    def loss(self, data: LoggedData) -> float:
        """Mean loss of the model's prediction for the offer each row shows, against what the
        row earned (lower is better): squared error of revenue here; models of a purchase
        probability use its log loss. Comparable only between models of the same kind: it
        is how the pipeline chooses among fits of one learner (its recency, say)."""
        if not len(data):
            return 0.0
        _, pred = self.shown(data)
        return float(np.mean((pred - np.asarray(data.rewards, dtype=np.float64)) ** 2))

    def shown(self, data: LoggedData) -> tuple[NDArray[np.int64], Floats]:
        """Each row's shown offer (its index) and the model's prediction for it."""
        index = {o: i for i, o in enumerate(self.offers)}
        a = np.array([index[o] for o in data.offers], dtype=np.int64)
        if not len(a):
            return a, np.zeros(0)
        pred: Floats = self.predict_batch(data.features)[np.arange(len(a)), a]
        return a, pred

    def purchase_loss(self, data: LoggedData, prices: Sequence[float]) -> float:
        """Log loss of the purchase probability (predicted revenue / price) of each row's
        shown offer, for models of purchases at a price."""
        if not len(data):
            return 0.0
        a, pred = self.shown(data)
        p = pred / np.asarray(prices, dtype=np.float64)[a]
        return log_loss(p, (np.asarray(data.rewards) > 0).astype(np.float64))

    def reward_variance(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64] | None:
        """Conditional variance of each offer's reward, if the model knows it (else None)."""
        return None

    def state(self) -> dict[str, Any]:
        """The fitted state as JSON-able data; :meth:`load_state` restores it."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned (fitted values)."""
        raise NotImplementedError

    def compile(self, cache_dir: Path) -> int:
        """See :meth:`Policy.compile`."""
        return 0


def log_loss(p: Floats, bought: Floats) -> float:
    """Mean log loss of purchase probabilities ``p`` against outcomes ``bought`` (0/1)."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    y = np.asarray(bought, dtype=np.float64)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def recency_weights(ts: Floats, half_life_seconds: float) -> Floats | None:
    """Row weights halving every ``half_life_seconds`` back from the newest row (None: 0,
    every row counts the same). A model fitted with them follows changing tastes faster and
    forgets old ones; which half-life pays is for the pipeline's evidence to say."""
    if half_life_seconds <= 0 or not len(ts):
        return None
    age = float(np.max(ts)) - np.asarray(ts, dtype=np.float64)
    out: Floats = np.power(0.5, age / half_life_seconds)
    return out


def _encoder(spec: Sequence[Mapping[str, Any]] | None) -> Encoder:
    """A reward model's encoder: the given spec, or the default feature set's."""
    return Encoder(spec) if spec is not None else Encoder.of(load_features())


def _prices(prices: Sequence[float], offers: Sequence[str]) -> list[float]:
    """One price per offer (all 1.0 when none are given: rewards are not purchases)."""
    out = [float(p) for p in prices] or [1.0] * len(offers)
    if len(out) != len(offers):
        raise ValueError("prices must give one price per offer")
    return out


def _bundle(offer: str) -> str:
    """The bundle part of an offer id ``bundle:message`` (the whole id for other actions)."""
    return offer_keys(offer)["bundle"]


def _message(offer: str) -> str:
    """The message part of an offer id; "-" for actions that are not bundle × message."""
    return offer_keys(offer)["message"]
