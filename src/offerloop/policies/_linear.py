"""Ridge regression of revenue with player × offer interactions: the first learned model.

For player features x (encoded, with a leading 1) and offer a = (bundle b, message m):

    revenue(x, a) ≈ w_a + U[b] · x + V[m] · x

so an offer shares what is learned about its bundle and its message with other offers. It is
fitted on the decisions where the offer was shown, without importance weights: the logging
policy depends only on x, so E[reward | x, a] is the same under any logging policy, and the
regression estimates it directly (weighting would only trade variance for robustness to
misspecification; see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.features import Encoder, load_features
from offerloop.policies._base import FeatureRow, LoggedData, RewardModel, _bundle, _message

__all__ = ["LinearRevenue"]

Matrix = NDArray[np.float64]


class LinearRevenue(RewardModel):
    kind = "linear"

    def __init__(
        self,
        offers: Sequence[str],
        alpha: float = 1.0,
        encoder: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(offers)
        self.alpha = float(alpha)
        self.encoder = Encoder(encoder) if encoder is not None else Encoder.of(load_features())
        self.bundles = sorted({_bundle(o) for o in self.offers})
        self.messages = sorted({_message(o) for o in self.offers})
        self._b = np.array([self.bundles.index(_bundle(o)) for o in self.offers])
        self._m = np.array([self.messages.index(_message(o)) for o in self.offers])
        self.feature_names = self.encoder.names
        d = len(self.feature_names) + 1
        self.w = np.zeros(len(self.offers))
        self.U = np.zeros((len(self.bundles), d))
        self.V = np.zeros((len(self.messages), d))

    def get_params(self) -> dict[str, Any]:
        return {"offers": list(self.offers), "alpha": self.alpha, "encoder": self.encoder.spec()}

    def _x(self, rows: Sequence[FeatureRow]) -> Matrix:
        return np.hstack([np.ones((len(rows), 1)), self.encoder.matrix(rows)])

    def _design(self, x: Matrix, offer_idx: NDArray[np.int64]) -> Matrix:
        n, d = x.shape
        k, nb, nm = len(self.offers), len(self.bundles), len(self.messages)
        phi = np.zeros((n, k + nb * d + nm * d))
        rows = np.arange(n)
        phi[rows, offer_idx] = 1.0
        b = self._b[offer_idx]
        m = self._m[offer_idx]
        for j in range(d):
            phi[rows, k + b * d + j] = x[:, j]
            phi[rows, k + nb * d + m * d + j] = x[:, j]
        return phi

    def fit(self, data: LoggedData) -> Self:
        index = {o: i for i, o in enumerate(self.offers)}
        unknown = sorted({o for o in data.offers if o not in index})
        if unknown:
            raise ValueError(f"logged offers not in this campaign: {unknown[:5]}")
        x = self._x(data.features)
        a = np.array([index[o] for o in data.offers], dtype=np.int64)
        phi = self._design(x, a)
        y = np.asarray(data.rewards, dtype=np.float64)
        gram = phi.T @ phi + self.alpha * np.eye(phi.shape[1])
        beta = np.linalg.solve(gram, phi.T @ y)
        k, d, nb = len(self.offers), x.shape[1], len(self.bundles)
        self.w = np.asarray(beta[:k], dtype=np.float64)
        self.U = np.asarray(beta[k : k + nb * d], dtype=np.float64).reshape(nb, d)
        self.V = np.asarray(beta[k + nb * d :], dtype=np.float64).reshape(len(self.messages), d)
        return self

    def predict_batch(self, rows: Sequence[FeatureRow]) -> Matrix:
        x = self._x(rows)
        by_bundle = x @ self.U.T  # (n, nb)
        by_message = x @ self.V.T  # (n, nm)
        out: Matrix = self.w[None, :] + by_bundle[:, self._b] + by_message[:, self._m]
        return np.maximum(out, 0.0)  # revenue is never negative

    def state(self) -> dict[str, Any]:
        return {
            "feature_names": self.feature_names,
            "bundles": self.bundles,
            "messages": self.messages,
            "w": self.w.tolist(),
            "U": self.U.tolist(),
            "V": self.V.tolist(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        if list(state["feature_names"]) != self.feature_names:
            raise ValueError("artifact was trained on other features than this code defines")
        self.w = np.asarray(state["w"], dtype=np.float64)
        self.U = np.asarray(state["U"], dtype=np.float64)
        self.V = np.asarray(state["V"], dtype=np.float64)
        if self.w.shape != (len(self.offers),) or self.U.shape[0] != len(self.bundles):
            raise ValueError("artifact coefficients do not match the campaign's offers")
