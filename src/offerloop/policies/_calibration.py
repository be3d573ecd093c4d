"""Thompson sampling over a reward model's calibration: exploration by uncertainty.

A point model (LightGBM purchase × price, say) predicts every offer's revenue for a player,
but it is no more sure of an offer it has seen bought a hundred times than of one it has
hardly ever shown to players like this one. Inverse-gap weighting (SquareCB) explores by
the predicted gap alone, so a model that is confidently wrong about a rarely shown offer (the
whales' favourite message on the dearest bundle, pooled with what other players like) can
keep it from being tried for days.

:class:`CalibratedThompson` keeps, for every bucket of players (``thompson_buckets``) and
offer, how many purchases the model expected on the rows where that offer was shown (``e``,
the sum of its predicted purchase probabilities: revenue / price) and how many there were
(``y``). The model's calibration factor for that cell has the posterior
``theta ~ Gamma(prior + y, prior + e)`` (Poisson counts with a Gamma(prior, prior) prior of
mean 1): wide where the offer was rarely shown, narrow where the model has been checked
often. A decision draws ``draws`` joint samples of theta and takes, in each, the offer whose
predicted revenue × theta is highest; the offer's probability is its share of the draws,
mixed with a uniform ``floor``. The draws are seeded by the row, so the same row always gets
the same probabilities (the controller and the shadow scorer recompute them exactly), and
the service samples the offer from exactly them: the logged propensity is the served one.

Offers the model is sure are worse are almost never tried; offers it has little evidence on
are tried in proportion to their chance of being the best, and less as evidence accumulates.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.policies._base import FeatureRow, Floats, LoggedData, RewardModel
from offerloop.policies._explore import EpsilonGreedy
from offerloop.policies._thompson import Buckets

__all__ = ["CalibratedThompson"]


class CalibratedThompson(EpsilonGreedy):
    """Probability matching over per-(bucket, offer) calibration posteriors of ``model``;
    see the module doc. ``prices`` turn predicted revenue into expected purchases (empty:
    rewards are counts themselves)."""

    kind = "calibrated_thompson"

    def __init__(
        self,
        offers: Sequence[str],
        model: RewardModel,
        buckets: Sequence[Sequence[Any]] = (),
        prices: Sequence[float] = (),
        floor: float = 0.02,
        draws: int = 32,
        prior: float = 1.0,
    ) -> None:
        super().__init__(offers, model, epsilon=0.0)
        if not 0.0 <= floor < 1.0:
            raise ValueError("floor must be in [0, 1)")
        if draws < 1:
            raise ValueError("draws must be >= 1")
        if prior <= 0:
            raise ValueError("prior must be > 0")
        encoder = getattr(model, "encoder", None)
        spec = encoder.spec() if encoder is not None else []
        self.buckets = Buckets(buckets, spec)
        k = len(self.offers)
        self.prices = [float(p) for p in prices] or [1.0] * k
        if len(self.prices) != k:
            raise ValueError("prices must give one price per offer")
        self.floor = float(floor)
        self.draws = int(draws)
        self.prior = float(prior)
        self._seen: dict[str, tuple[Floats, Floats]] = {}  # bucket → (purchases, expected)

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "model": self.model,
            "buckets": self.buckets.spec(),
            "prices": list(self.prices),
            "floor": self.floor,
            "draws": self.draws,
            "prior": self.prior,
        }

    def fit(self, data: LoggedData) -> Self:
        """Fit the reward model, then count, per (bucket, offer), the purchases and the model's
        expected purchases on the rows that showed the offer."""
        self.model.fit(data)
        a, predicted = self.model.shown(data)
        prices = np.asarray(self.prices)
        expected = predicted / prices[a]
        bought = np.asarray(data.rewards, dtype=np.float64) / prices[a]
        k = len(self.offers)
        seen: dict[str, tuple[Floats, Floats]] = {}
        for row, offer, y, e in zip(data.features, a, bought, expected, strict=True):
            key = self.buckets.key(row)
            if key not in seen:
                seen[key] = (np.zeros(k), np.zeros(k))
            seen[key][0][offer] += max(float(y), 0.0)
            seen[key][1][offer] += max(float(e), 0.0)
        self._seen = seen
        return self

    def posterior(self, key: str) -> tuple[Floats, Floats]:
        """Gamma shape and rate of every offer's calibration factor in a bucket."""
        k = len(self.offers)
        y, e = self._seen.get(key, (np.zeros(k), np.zeros(k)))
        return self.prior + y, self.prior + e

    def act(self, features: FeatureRow) -> Floats:
        out: Floats = self.act_batch([features])[0]
        return out

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        scores = self.model.predict_batch(rows)
        n, k = scores.shape
        out = np.empty((n, k))
        cache: dict[str, tuple[Floats, Floats]] = {}
        scores = np.maximum(scores, 0.0)  # a calibration factor scales revenue, never a loss
        for i, row in enumerate(rows):
            if scores[i].max() <= 0.0:  # no prediction (unfitted): nothing to prefer
                out[i] = 1.0 / k
                continue
            key = self.buckets.key(row)
            if key not in cache:
                shape, rate = self.posterior(key)
                cache[key] = (shape, 1.0 / rate)
            shape, scale = cache[key]
            # seeded by the row's predictions (rounded: a matrix product's last bits depend on
            # the batch's size, and a row must get the same numbers alone as in a batch) and
            # bucket: the same row, the same numbers
            seed = zlib.crc32((np.round(scores[i], 8) + 0.0).tobytes() + key.encode())
            theta = np.random.default_rng(seed).gamma(shape, scale, size=(self.draws, k))
            best = np.argmax(theta * scores[i], axis=1)
            out[i] = np.bincount(best, minlength=k) / self.draws
        result: NDArray[np.float64] = (1.0 - self.floor) * out + self.floor / k
        return result

    def state(self) -> dict[str, Any]:
        """The reward model's state, plus each bucket's purchase and expected counts."""
        return super().state() | {
            "calibration": {
                key: {"bought": y.tolist(), "expected": e.tolist()}
                for key, (y, e) in sorted(self._seen.items())
            }
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        k = len(self.offers)
        seen: dict[str, tuple[Floats, Floats]] = {}
        for key, doc in state.get("calibration", {}).items():
            y = np.asarray(doc["bought"], dtype=np.float64)
            e = np.asarray(doc["expected"], dtype=np.float64)
            if y.shape != (k,) or e.shape != (k,) or (y < 0).any() or (e < 0).any():
                raise ValueError(f"bucket {key!r}: counts must be k non-negative numbers")
            seen[str(key)] = (y, e)
        self._seen = seen
