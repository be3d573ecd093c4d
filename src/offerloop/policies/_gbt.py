"""Gradient-boosted tree reward models (LightGBM, its native API; no scikit-learn).

One model scores every (player, offer) pair: the player's encoded features plus the offer's
own (bundle and message one-hot, price). Two targets:

* :class:`GBTRevenue` regresses revenue directly;
* :class:`GBTPurchase` factors revenue as P(purchase | player, offer) × price: a binary model
  of "bought" times the offer's price. Revenue from one offer is its price or nothing, so the
  factored form learns a bounded probability instead of a heavy-tailed amount, which fits
  better when expensive bundles are rare but decisive.

Training is unweighted by default: the logging policy depends only on the logged features,
so the conditional reward is the same under any logging policy (see docs/architecture.md).
``ipw=True`` weights rows by their inverse propensity (clipped at ``max_weight``), which
trades variance for robustness when the model is misspecified where the logging policy
rarely explored. Artifacts are LightGBM's own text format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.campaigns import offer_keys
from offerloop.policies._base import (
    FeatureRow,
    LoggedData,
    RewardModel,
    _bundle,
    _encoder,
    _message,
    _prices,
    recency_weights,
)
from offerloop.policies._compiled import CompiledTrees, compile_booster

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = ["GBTPurchase", "GBTRevenue"]

Matrix = NDArray[np.float64]
MEMO_BATCHES = 3  # batches of more than 8 rows whose predictions a model keeps


class _GBT(RewardModel):
    objective = "regression"
    # LightGBM's extremely randomised trees (a random threshold per feature at each split)
    # unless the constructor says otherwise
    default_extra_trees: ClassVar[bool] = False

    def __init__(
        self,
        offers: Sequence[str],
        prices: Sequence[float] = (),
        encoder: Sequence[Mapping[str, Any]] | None = None,
        n_estimators: int = 150,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 50,
        feature_fraction: float = 1.0,
        ipw: bool = False,
        max_weight: float = 50.0,
        seed: int = 0,
        min_sum_hessian_in_leaf: float = 1e-3,  # LightGBM's own default
        half_life: float = 0.0,  # seconds; rows weigh 0.5 ** (age / half_life) (0: equal)
        extra_trees: bool | None = None,  # None: the kind's default_extra_trees
    ) -> None:
        super().__init__(offers)
        self.prices = _prices(prices, self.offers)
        self.encoder = _encoder(encoder)
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.num_leaves = int(num_leaves)
        self.min_data_in_leaf = int(min_data_in_leaf)
        self.feature_fraction = float(feature_fraction)
        self.ipw = bool(ipw)
        self.max_weight = float(max_weight)
        self.seed = int(seed)
        self.min_sum_hessian_in_leaf = float(min_sum_hessian_in_leaf)
        self.half_life = float(half_life)
        self.extra_trees = self.default_extra_trees if extra_trees is None else bool(extra_trees)
        # the last few batches scored (rows, predictions): judging several candidates and the
        # release on the same held-out rows, with checks in between, scores each batch once
        self._last: list[tuple[Sequence[FeatureRow], Matrix]] = []
        self.booster: lgb.Booster | None = None
        self._compiled: CompiledTrees | None = None  # native code serving this booster
        bundles = sorted({_bundle(o) for o in self.offers})
        messages = sorted({_message(o) for o in self.offers})
        k = len(self.offers)
        # per offer: bundle one-hot, message one-hot, price, log price
        self._offer_x = np.zeros((k, len(bundles) + len(messages) + 2))
        for i, o in enumerate(self.offers):
            b, m = _bundle(o), _message(o)
            self._offer_x[i, bundles.index(b)] = 1.0
            self._offer_x[i, len(bundles) + messages.index(m)] = 1.0
            self._offer_x[i, -2] = self.prices[i]
            self._offer_x[i, -1] = np.log1p(self.prices[i])
        # per offer and offer-history group: the player's history of this offer's bundle,
        # message or offer id (a column of x, -1: not counted), one column for every offer
        self._own = self.encoder.offer_columns([offer_keys(o) for o in self.offers])

    def get_params(self) -> dict[str, Any]:
        return {
            "offers": list(self.offers),
            "prices": list(self.prices),
            "encoder": self.encoder.spec(),
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "ipw": self.ipw,
            "max_weight": self.max_weight,
            "seed": self.seed,
            "min_sum_hessian_in_leaf": self.min_sum_hessian_in_leaf,
            "extra_trees": self.extra_trees,
        } | ({"half_life": self.half_life} if self.half_life else {})

    def _design(self, x: Matrix, offer_idx: NDArray[np.int64]) -> Matrix:
        """(player features, the offer's attributes, the player's history of this offer)."""
        own = self._own[offer_idx]
        if not own.shape[1]:
            return np.hstack([x, self._offer_x[offer_idx]])
        hist = np.where(own >= 0, np.take_along_axis(x, np.maximum(own, 0), axis=1), 0.0)
        return np.hstack([x, self._offer_x[offer_idx], hist])

    def _target(self, data: LoggedData) -> Matrix:
        return np.asarray(data.rewards, dtype=np.float64)

    def fit(self, data: LoggedData) -> Self:
        index = {o: i for i, o in enumerate(self.offers)}
        a = np.array([index[o] for o in data.offers], dtype=np.int64)
        x = self._design(self.encoder.matrix(data.features), a)
        weight = recency_weights(data.ts, self.half_life)
        if self.ipw:
            ipw = np.minimum(1.0 / np.asarray(data.propensities), self.max_weight)
            weight = ipw if weight is None else weight * ipw
        params = {
            "objective": self.objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "seed": self.seed,
            "min_sum_hessian_in_leaf": self.min_sum_hessian_in_leaf,
            "extra_trees": self.extra_trees,
            "deterministic": True,
            "force_row_wise": True,
            # one thread: OpenMP threads spin on a busy machine (a fit took 6x longer with 2
            # threads on 2 loaded cores; docs/architecture.md)
            "num_threads": 1,
            "verbose": -1,
        }
        import lightgbm as lgb  # imported on first use: a heavy import most commands never need

        ds = lgb.Dataset(x, label=self._target(data), weight=weight, free_raw_data=True)
        self.booster = lgb.train(params, ds, num_boost_round=self.n_estimators)
        self._last = []
        self._compiled = None
        return self

    def _raw(self, rows: Sequence[FeatureRow]) -> Matrix:
        """The booster's prediction for every (row, offer): shape (n, k)."""
        n, k = len(rows), len(self.offers)
        if self.booster is None:
            return np.zeros((n, k))
        for cached_rows, cached in self._last:
            if cached_rows is rows and len(cached) == n:
                return cached  # the same batch again (direct value, then its variance)
        x = self.encoder.matrix(rows)
        big = self._design(np.repeat(x, k, axis=0), np.tile(np.arange(k), n))
        compiled = self._compiled
        if compiled is not None:
            out: Matrix = compiled.predict(big).reshape(n, k)
        else:
            out = np.asarray(self.booster.predict(big, num_threads=1)).reshape(n, k)
        if n > 8:
            out.flags.writeable = False
            self._last = [(rows, out), *self._last[: MEMO_BATCHES - 1]]
        return out

    def predict_batch(self, rows: Sequence[FeatureRow]) -> Matrix:
        return self._raw(rows)

    def state(self) -> dict[str, Any]:
        return {"booster": self.booster.model_to_string() if self.booster else None}

    def load_state(self, state: Mapping[str, Any]) -> None:
        text = state.get("booster")
        import lightgbm as lgb

        self.booster = lgb.Booster(model_str=text) if text else None
        self._last = []
        self._compiled = None

    def compile(self, cache_dir: Path) -> int:
        """Serve through native code (``policies._compiled``), checked against LightGBM;
        raises if it cannot (the booster keeps serving)."""
        booster = self.booster
        if booster is None:
            return 0
        self._compiled = compile_booster(
            booster.model_to_string(),
            lambda x: np.asarray(booster.predict(x, num_threads=1), dtype=np.float64),
            cache_dir,
        )
        return 1


class GBTRevenue(_GBT):
    """LightGBM regression of revenue on player and offer features, with a Tweedie objective:
    revenue is mostly zero and otherwise a price, and the log link keeps every prediction
    positive (a squared-error booster predicted negative revenue, and the model checks
    rejected the learner on every night of the demo)."""

    kind = "gbt"
    objective = "tweedie"


class GBTPurchase(_GBT):
    """LightGBM purchase probability × price. (A monotone constraint "the probability falls
    as the price rises" scored +0.025 of the oracle offline on random logs after 7 days, but
    0.55 instead of 0.69 of the oracle in the 14-day online loop: the most expensive bundle
    is the best offer for the players who matter most. Not used.)

    Its trees are extremely randomised (``extra_trees``): at the loop's data sizes (10k–20k
    decisions, a few hundred to 1,500 purchases) the greedy choice of the usual trees, whose
    thresholds fit the noise of a few rows, reached 0.78 of the oracle on the next day's
    players, random thresholds 0.83; in the demo's 14-day loop, seeds 1–5, the median went
    from 0.733 to 0.747 over 14 days and from 0.814 to 0.833 over the last 3."""

    kind = "purchase_gbt"
    objective = "binary"
    default_extra_trees = True

    def _target(self, data: LoggedData) -> Matrix:
        return (np.asarray(data.rewards) > 0).astype(np.float64)

    def predict_batch(self, rows: Sequence[FeatureRow]) -> Matrix:
        """Purchase probability × price of every offer (zeros before fit)."""
        if self.booster is None:
            return np.zeros((len(rows), len(self.offers)))
        out: Matrix = self._raw(rows) * np.asarray(self.prices)[None, :]
        return out

    def purchase_probabilities(self, rows: Sequence[FeatureRow]) -> Matrix:
        """The purchase probability of every offer for each row, in [0, 1] (zeros before fit)."""
        return self._raw(rows)

    def loss(self, data: LoggedData) -> float:
        """Log loss of the purchase probability of each row's shown offer."""
        return self.purchase_loss(data, self.prices)

    def reward_variance(self, rows: Sequence[FeatureRow]) -> Matrix | None:
        """Revenue is price × Bernoulli(p): variance price² p (1 − p)."""
        if self.booster is None:
            return None
        p = self._raw(rows)
        out: Matrix = (np.asarray(self.prices)[None, :] ** 2) * p * (1.0 - p)
        return out
