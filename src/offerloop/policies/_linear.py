"""Ridge regression of revenue with player × offer interactions: the first learned model.

For player features x (encoded, with a leading 1) and offer a = (bundle b, message m):

    revenue(x, a) ≈ w_a + U[b] · x + V[m] · x

so an offer shares what is learned about its bundle and its message with other offers. It is
fitted on the decisions where the offer was shown, without importance weights: the logging
policy depends only on x, so E[reward | x, a] is the same under any logging policy, and the
regression estimates it directly (weighting would only trade variance for robustness to
misspecification; see docs/architecture.md).

The design matrix is sparse (each row holds its offer's indicator and two copies of x), so
wide data stays cheap: up to ``DIRECT_COLUMNS`` coefficients the ridge is solved exactly from
the sparse Gram matrix, beyond that iteratively (LSQR with the ridge as damping), never
forming a dense n × p matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from numpy.typing import NDArray

from offerloop.policies._base import (
    FeatureRow,
    LoggedData,
    RewardModel,
    _bundle,
    _encoder,
    _message,
    recency_weights,
)

if TYPE_CHECKING:
    from scipy import sparse

__all__ = ["LinearRevenue"]

Matrix = NDArray[np.float64]
DIRECT_COLUMNS = 2000  # above this many coefficients the ridge is solved iteratively


class LinearRevenue(RewardModel):
    """Ridge regression of revenue on player × bundle and player × message interactions; see the
    module doc. ``alpha``: the ridge penalty; ``half_life``: seconds over which a row's weight
    halves (0: every row weighs the same)."""

    kind = "linear"

    def __init__(
        self,
        offers: Sequence[str],
        alpha: float = 1.0,
        encoder: Sequence[Mapping[str, Any]] | None = None,
        half_life: float = 0.0,
    ) -> None:
        super().__init__(offers)
        self.alpha = float(alpha)
        self.half_life = float(half_life)  # seconds (0: every row weighs the same)
        self.encoder = _encoder(encoder)
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
        out = {"offers": list(self.offers), "alpha": self.alpha, "encoder": self.encoder.spec()}
        return out | ({"half_life": self.half_life} if self.half_life else {})

    def _x(self, rows: Sequence[FeatureRow]) -> Matrix:
        return np.hstack([np.ones((len(rows), 1)), self.encoder.matrix(rows)])

    def _design(self, x: Matrix, offer_idx: NDArray[np.int64]) -> sparse.csr_matrix:
        from scipy import sparse  # imported on first fit: most commands never need it

        n, d = x.shape
        k, nb = len(self.offers), len(self.bundles)
        cols = np.concatenate(
            [
                offer_idx[:, None],
                k + self._b[offer_idx][:, None] * d + np.arange(d)[None, :],
                k + nb * d + self._m[offer_idx][:, None] * d + np.arange(d)[None, :],
            ],
            axis=1,
        )
        vals = np.concatenate([np.ones((n, 1)), x, x], axis=1)
        width = k + (nb + len(self.messages)) * d
        indptr = np.arange(0, n * (2 * d + 1) + 1, 2 * d + 1)
        return sparse.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, width))

    def fit(self, data: LoggedData) -> Self:
        """Solve the ridge; ValueError if a logged offer is not one of ``offers``."""
        index = {o: i for i, o in enumerate(self.offers)}
        unknown = sorted({o for o in data.offers if o not in index})
        if unknown:
            raise ValueError(f"logged offers not in this campaign: {unknown[:5]}")
        x = self._x(data.features)
        a = np.array([index[o] for o in data.offers], dtype=np.int64)
        phi = self._design(x, a)
        y = np.asarray(data.rewards, dtype=np.float64)
        weight = recency_weights(data.ts, self.half_life)
        if weight is not None:  # weighted ridge: rows and targets scaled by sqrt(weight)
            root = np.sqrt(weight)
            from scipy import sparse

            phi = sparse.diags(root) @ phi
            y = y * root
        p = phi.shape[1]
        if p <= DIRECT_COLUMNS:
            gram = (phi.T @ phi).toarray() + self.alpha * np.eye(p)
            beta = np.linalg.solve(gram, phi.T @ y)
        else:
            from scipy.sparse.linalg import lsqr

            beta = lsqr(phi, y, damp=float(np.sqrt(self.alpha)), atol=1e-10, btol=1e-10)[0]
        k, d, nb = len(self.offers), x.shape[1], len(self.bundles)
        self.w = np.asarray(beta[:k], dtype=np.float64)
        self.U = np.asarray(beta[k : k + nb * d], dtype=np.float64).reshape(nb, d)
        self.V = np.asarray(beta[k + nb * d :], dtype=np.float64).reshape(len(self.messages), d)
        return self

    def predict_batch(self, rows: Sequence[FeatureRow]) -> Matrix:
        """Predicted revenue of every offer, clipped at 0 (revenue is never negative)."""
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
        """Restore the coefficients; ValueError if the artifact was fitted on other features or
        other offers."""
        if list(state["feature_names"]) != self.feature_names:
            raise ValueError("artifact was trained on other features than this code defines")
        self.w = np.asarray(state["w"], dtype=np.float64)
        self.U = np.asarray(state["U"], dtype=np.float64)
        self.V = np.asarray(state["V"], dtype=np.float64)
        if self.w.shape != (len(self.offers),) or self.U.shape[0] != len(self.bundles):
            raise ValueError("artifact coefficients do not match the campaign's offers")
