"""Thompson sampling per observable bucket: a Beta posterior of the purchase probability of
every offer in every bucket of players, and probability matching over it.

:class:`BucketBeta` is the reward model: players fall into buckets by a few of their features
(spend tier × bought recently × platform, say: the setting ``thompson_buckets``), and every
(bucket, offer) keeps ``Beta(prior_wins + purchases, prior_losses + shows - purchases)``.
Its prediction is the posterior mean × the offer's price. It learns from a few hundred
decisions what a tree model needs thousands for, and stops improving there: the pipeline runs
it beside the tree models, and the evidence decides which one serves.

:class:`ThompsonSampling` is its exploration: the probability of an offer is the probability
that its sampled revenue (``theta × price``, ``theta`` drawn from the posterior) is the
highest, estimated once per bucket from ``draws`` joint draws with a seed fixed by the bucket,
then mixed with a uniform ``floor``. The service samples the offer from exactly those
probabilities, so the logged propensity is the served one (sampling theta at request time, as
online Thompson sampling does, would leave the propensity unknown). Offers the posterior is
unsure of keep being tried, in proportion to their chance of being the best; as the
posteriors narrow, exploration fades by itself.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop._settings import Bucket
from offerloop.policies._base import (
    FeatureRow,
    Floats,
    LoggedData,
    RewardModel,
    _encoder,
    _prices,
    recency_weights,
)
from offerloop.policies._explore import EpsilonGreedy

__all__ = ["BucketBeta", "Buckets", "ThompsonSampling"]


class Buckets:
    """Players in buckets by a few of their features: ``[[name, cut points], ...]`` (a
    numeric feature with cut points ``c1 < c2 < ...`` falls in bucket ``i`` where
    ``c_i < x <= c_(i+1)``; one without cut points buckets by its value). ``encoder_spec``
    names the features and their defaults (a missing feature takes its default)."""

    def __init__(
        self, buckets: Sequence[Sequence[Any]], encoder_spec: Sequence[Mapping[str, Any]]
    ) -> None:
        self.buckets: list[Bucket] = [(str(b[0]), tuple(float(c) for c in b[1])) for b in buckets]
        if not self.buckets:
            raise ValueError("name at least one feature to bucket players by")
        known = {str(s["name"]): s for s in encoder_spec}
        missing = [n for n, _ in self.buckets if n not in known]
        if missing:
            raise ValueError(f"bucket features not among the features: {missing}")
        self._defaults = {n: known[n]["default"] for n, _ in self.buckets}

    def spec(self) -> list[list[Any]]:
        return [[n, list(c)] for n, c in self.buckets]

    def key(self, row: FeatureRow) -> str:
        """The bucket of a feature row."""
        parts = []
        for name, cuts in self.buckets:
            x = row.get(name)
            if x is None:
                x = self._defaults[name]
            if cuts:
                parts.append(str(int(np.searchsorted(cuts, float(x), side="left"))))
            else:
                parts.append(str(x))
        return "|".join(parts)


class BucketBeta(RewardModel):
    """Posterior mean purchase probability × price per (bucket, offer); see the module doc."""

    kind = "thompson"

    def __init__(
        self,
        offers: Sequence[str],
        prices: Sequence[float] = (),
        encoder: Sequence[Mapping[str, Any]] | None = None,
        buckets: Sequence[Sequence[Any]] = (),
        prior: Sequence[float] = (1.0, 1.0),
        half_life: float = 0.0,
    ) -> None:
        super().__init__(offers)
        self.prices = _prices(prices, self.offers)
        self.encoder = _encoder(encoder)
        self._buckets = Buckets(buckets, self.encoder.spec())
        self.buckets = self._buckets.buckets
        self.prior = (float(prior[0]), float(prior[1]))
        if min(self.prior) <= 0:
            raise ValueError("prior pseudo-counts must be > 0")
        self.half_life = float(half_life)
        self._wins: dict[str, Floats] = {}
        self._shows: dict[str, Floats] = {}

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "prices": list(self.prices),
            "encoder": self.encoder.spec(),
            "buckets": [[n, list(c)] for n, c in self.buckets],
            "prior": list(self.prior),
        } | ({"half_life": self.half_life} if self.half_life else {})

    def bucket_of(self, row: FeatureRow) -> str:
        """The bucket key of a feature row (missing features take their default)."""
        return self._buckets.key(row)

    def fit(self, data: LoggedData) -> Self:
        """Count shows and purchases (recency-weighted with a ``half_life``) per (bucket, offer);
        rows of offers not in ``offers`` are skipped."""
        index = {o: i for i, o in enumerate(self.offers)}
        w = recency_weights(data.ts, self.half_life)
        weights = np.ones(len(data)) if w is None else w
        k = len(self.offers)
        wins: dict[str, Floats] = {}
        shows: dict[str, Floats] = {}
        for row, offer, reward, weight in zip(
            data.features, data.offers, data.rewards, weights, strict=True
        ):
            a = index.get(offer)
            if a is None:
                continue
            key = self.bucket_of(row)
            if key not in shows:
                wins[key], shows[key] = np.zeros(k), np.zeros(k)
            shows[key][a] += weight
            if reward > 0:
                wins[key][a] += weight
        self._wins, self._shows = wins, shows
        return self

    def known_buckets(self) -> list[str]:
        """The buckets the fitted data had rows of."""
        return sorted(self._shows)

    def posterior(self, key: str) -> tuple[Floats, Floats]:
        """Beta parameters (alpha, beta) of every offer's purchase probability in a bucket."""
        k = len(self.offers)
        wins = self._wins.get(key, np.zeros(k))
        shows = self._shows.get(key, np.zeros(k))
        return self.prior[0] + wins, self.prior[1] + shows - wins

    def predict_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        """Posterior mean purchase probability × price of every offer, in the row's bucket."""
        prices = np.asarray(self.prices)
        out = np.empty((len(rows), len(self.offers)))
        cache: dict[str, Floats] = {}
        for i, row in enumerate(rows):
            key = self.bucket_of(row)
            if key not in cache:
                a, b = self.posterior(key)
                cache[key] = a / (a + b) * prices
            out[i] = cache[key]
        return out

    def loss(self, data: LoggedData) -> float:
        """Log loss of the posterior mean purchase probability of each row's shown offer."""
        return self.purchase_loss(data, self.prices)

    def state(self) -> dict[str, Any]:
        return {
            "buckets": {
                key: {"wins": self._wins[key].tolist(), "shows": self._shows[key].tolist()}
                for key in sorted(self._shows)
            }
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the counts; ValueError unless 0 <= wins <= shows for every offer of a bucket."""
        k = len(self.offers)
        wins, shows = {}, {}
        for key, doc in state["buckets"].items():
            w = np.asarray(doc["wins"], dtype=np.float64)
            n = np.asarray(doc["shows"], dtype=np.float64)
            if w.shape != (k,) or n.shape != (k,) or (w < 0).any() or (w > n + 1e-9).any():
                raise ValueError(f"bucket {key!r}: counts must be 0 <= wins <= shows per offer")
            wins[str(key)], shows[str(key)] = w, n
        self._wins, self._shows = wins, shows


class ThompsonSampling(EpsilonGreedy):
    """Probability matching over a :class:`BucketBeta` posterior, mixed with a uniform floor
    (a total share): see the module doc. Probabilities are exact and the same for every row
    of a bucket, so serving one is a dictionary lookup."""

    kind = "thompson_sampling"

    def __init__(
        self, offers: Sequence[str], model: RewardModel, floor: float = 0.02, draws: int = 4000
    ) -> None:
        super().__init__(offers, model, epsilon=0.0)
        if not isinstance(model, BucketBeta):
            raise ValueError("Thompson sampling needs a BucketBeta posterior")
        if not 0.0 <= floor < 1.0:
            raise ValueError("floor must be in [0, 1)")
        if draws < 1:
            raise ValueError("draws must be >= 1")
        self.posterior_model: BucketBeta = model
        self.floor = float(floor)
        self.draws = int(draws)
        k = len(self.offers)
        # the prior's probabilities: for every bucket the data never saw (constructor
        # parameters only, so computed once)
        self._prior = self._match(np.full(k, model.prior[0]), np.full(k, model.prior[1]), seed=0)
        self._probs: dict[str, Floats] = {}
        self._prepare()

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "model": self.model,
            "floor": self.floor,
            "draws": self.draws,
        }

    def fit(self, data: LoggedData) -> Self:
        """Fit the posterior, then recompute the probabilities of every bucket it knows."""
        self.model.fit(data)
        self._prepare()
        return self

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self._prepare()

    def _prepare(self) -> None:
        """Compute every known bucket's probabilities now, off the request path; any other
        bucket gets the prior's (one vector, whatever the input: unbounded feature values
        cannot grow the cache)."""
        model = self.posterior_model
        self._probs = {key: self._match(*model.posterior(key)) for key in model.known_buckets()}

    def _match(self, a: Floats, b: Floats, seed: int | None = None) -> Floats:
        """Probability matching: each offer's chance that its sampled revenue is the highest,
        from ``draws`` joint draws (seeded, so the same counts give the same numbers)."""
        key = zlib.crc32(a.tobytes() + b.tobytes()) if seed is None else seed
        rng = np.random.default_rng(key)
        theta = rng.beta(a, b, size=(self.draws, len(a)))
        best = np.argmax(theta * np.asarray(self.posterior_model.prices), axis=1)
        k = len(a)
        match = np.bincount(best, minlength=k) / self.draws
        out: Floats = (1.0 - self.floor) * match + self.floor / k
        return out

    def bucket_probabilities(self, key: str) -> Floats:
        """The served probabilities of a bucket."""
        return self._probs.get(key, self._prior)

    def act_batch(self, rows: Sequence[FeatureRow]) -> NDArray[np.float64]:
        out = np.empty((len(rows), len(self.offers)))
        for i, row in enumerate(rows):
            out[i] = self.bucket_probabilities(self.posterior_model.bucket_of(row))
        return out

    def act(self, features: FeatureRow) -> Floats:
        """The precomputed probabilities of the row's bucket (the prior's for one never seen)."""
        return self.bucket_probabilities(self.posterior_model.bucket_of(features)).copy()
