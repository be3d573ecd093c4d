"""Drift and data quality: live traffic against the training window, feature by feature.

* numeric features: population stability index over the reference window's deciles;
* categorical features: PSI over the categories seen, plus the Jensen–Shannon divergence
  (base 2, in [0, 1]);
* the offer mix: PSI and Jensen–Shannon of the offers shown;
* data quality: the share of rows whose value is the feature's default (missing or never
  seen), in both windows.

States follow the usual PSI convention: below ``warn`` (0.1) "ok", below ``alert`` (0.25)
"warn", else "alert".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from offerloop.features import Feature

__all__ = ["drift_report", "js_divergence", "psi", "state_of"]

_EPS = 1e-4  # share given to an empty bin, so PSI stays finite
_BINS = 10


def psi(reference: ArrayLike, live: ArrayLike) -> float:
    """Population stability index of two histograms (counts or shares over the same bins)."""
    r = np.asarray(reference, dtype=np.float64)
    x = np.asarray(live, dtype=np.float64)
    if r.sum() <= 0 or x.sum() <= 0:
        return 0.0
    r = np.maximum(r / r.sum(), _EPS)
    x = np.maximum(x / x.sum(), _EPS)
    return float(((x - r) * np.log(x / r)).sum())


def js_divergence(reference: ArrayLike, live: ArrayLike) -> float:
    """Jensen–Shannon divergence (base 2, 0 = same distribution, 1 = disjoint)."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(live, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
        mask = a > 0
        return float((a[mask] * np.log2(a[mask] / b[mask])).sum())

    return max(0.0, min(1.0, (kl(p, m) + kl(q, m)) / 2))


def state_of(value: float, warn: float, alert: float) -> str:
    """``ok``, ``warn`` or ``alert``: where ``value`` stands against the thresholds (inclusive)."""
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    return float(v)


def _numeric(ref: list[float], live: list[float]) -> float:
    r = np.array([v for v in ref if math.isfinite(v)])
    x = np.array([v for v in live if math.isfinite(v)])
    if len(r) == 0 or len(x) == 0:
        return 0.0
    # deciles of the reference, plus its minimum and just above its maximum: values outside
    # the reference's range get bins of their own (a feature that was constant in training
    # and moved live is drift, though every decile edge is the same value)
    inner = np.quantile(r, np.linspace(0, 1, _BINS + 1)[1:-1])
    edges = np.unique(np.concatenate([[r.min()], inner, [np.nextafter(r.max(), np.inf)]]))
    r_counts = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1)
    x_counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    return psi(r_counts, x_counts)


def _categorical(ref: list[str], live: list[str]) -> tuple[float, float]:
    cats = sorted(set(ref) | set(live))
    rc, xc = Counter(ref), Counter(live)
    r = [rc[c] for c in cats]
    x = [xc[c] for c in cats]
    return psi(r, x), js_divergence(r, x)


def drift_report(
    features: Iterable[Feature],
    reference: Sequence[Mapping[str, Any]],
    live: Sequence[Mapping[str, Any]],
    reference_offers: Sequence[str],
    live_offers: Sequence[str],
    warn: float = 0.1,
    alert: float = 0.25,
) -> dict[str, Any]:
    """Per-feature drift and default shares, and the offer mix's drift."""
    out: list[dict[str, Any]] = []
    for f in features:
        ref_vals = [r.get(f.name, f.default) for r in reference]
        live_vals = [r.get(f.name, f.default) for r in live]
        item: dict[str, Any] = {"feature": f.name, "type": f.type}
        if not ref_vals or not live_vals:
            item.update(psi=None, js=None, state="no data")
        elif f.type == "category":
            p, j = _categorical([str(v) for v in ref_vals], [str(v) for v in live_vals])
            item.update(psi=p, js=j, state=state_of(p, warn, alert))
        else:
            p = _numeric([_number(v) for v in ref_vals], [_number(v) for v in live_vals])
            item.update(psi=p, js=None, state=state_of(p, warn, alert))
        item["default_share_reference"] = (
            sum(1 for v in ref_vals if v == f.default) / len(ref_vals) if ref_vals else None
        )
        item["default_share_live"] = (
            sum(1 for v in live_vals if v == f.default) / len(live_vals) if live_vals else None
        )
        out.append(item)
    offers: dict[str, Any] = {"psi": None, "js": None, "state": "no data"}
    if reference_offers and live_offers:
        p, j = _categorical(list(reference_offers), list(live_offers))
        offers = {"psi": p, "js": j, "state": state_of(p, warn, alert)}
    return {
        "features": out,
        "offers": offers,
        "reference_rows": len(reference),
        "live_rows": len(live),
        "thresholds": {"warn": warn, "alert": alert},
    }
