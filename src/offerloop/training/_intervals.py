"""Intervals that stay honest with rare, heavily weighted rewards, and the evidence bar: the
building blocks of every estimator in :mod:`offerloop.training._estimators` (whose docstring
explains the construction).

An interval is the normal one widened by how far a Fay–Feuer gamma interval of the
reward-carrying part ``Σ w r / n`` reaches beyond it (``excess``, ``widened``); the gamma
interval allows for one more event than observed (``gamma_interval``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from offerloop._errors import InvalidInput
from offerloop._settings import Settings

__all__ = [
    "EVIDENCE",
    "HEAVY_WEIGHT",
    "Bounds",
    "Estimate",
    "Evidence",
    "Rows",
    "check_propensities",
    "effective_rows",
    "estimate_of",
    "gamma_interval",
    "hull",
    "normal_or",
    "rare_interval",
    "reward_bound",
    "reward_scale",
    "rows_of",
    "widened",
    "z_of",
]

Floats = NDArray[np.float64]
Bounds = Callable[[float], tuple[float, float]]  # two-sided confidence -> (lower, upper)

HEAVY_WEIGHT = 1000.0  # weights above this are worth a warning


@dataclass(frozen=True)
class Evidence:
    """How much an estimate must rest on to be decided on (settings ``min_effective_rows``,
    ``min_rewarded_rows``)."""

    min_ess: float = 50.0  # effective rows of the importance weights
    min_events: int = 10  # rewarded rows the policy could have chosen

    @classmethod
    def of(cls, settings: Settings) -> Evidence:
        """The bar the settings set: ``min_effective_rows`` and ``min_rewarded_rows``."""
        return cls(settings.min_effective_rows, settings.min_rewarded_rows)


def reward_bound(prices: Sequence[float], settings: Settings) -> float:
    """The most one decision can earn: the dearest offer, bought as often as attribution
    counts (the scale of the rare-event intervals)."""
    return max(prices) * settings.attribution_max_purchases


EVIDENCE = Evidence()


SEQUENCE_HORIZON = 1000.0  # rows at which always-valid intervals are tightest


@dataclass(frozen=True)
class Estimate:
    """A value per decision with a 95 % interval, and what it rests on."""

    value: float
    lower: float
    upper: float
    se: float  # the normal-approximation standard error (for reference)
    ess: float  # effective sample size of the importance weights
    n: int  # rows
    matched: float = 1.0  # share of rows with a positive weight
    events: int = 0  # rows with a positive weight and a reward
    max_weight: float = 0.0
    warnings: tuple[str, ...] = ()
    thin: bool = False
    _bounds: Bounds | None = field(default=None, repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Enough evidence to decide on (not thin)."""
        return not self.thin

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided interval at ``confidence`` (0.95 gives ``lower``, ``upper``)."""
        if not 0.0 < confidence < 1.0:
            raise ValueError("confidence must be strictly between 0 and 1")
        if self._bounds is None:
            z = z_of(confidence)
            return self.value - z * self.se, self.value + z * self.se
        return self._bounds(confidence)

    def lower_bound(self, confidence: float = 0.95) -> float:
        """A one-sided lower bound holding with ``confidence``."""
        return self.interval(2.0 * confidence - 1.0)[0] if confidence > 0.5 else -math.inf

    def upper_bound(self, confidence: float = 0.95) -> float:
        """A one-sided upper bound holding with ``confidence``."""
        return self.interval(2.0 * confidence - 1.0)[1] if confidence > 0.5 else math.inf

    def always_valid(
        self, confidence: float = 0.95, horizon: float = 1000.0
    ) -> tuple[float, float]:
        """A time-uniform interval at ``confidence``: it may be looked at after every new batch
        of decisions and acted on the first time it excludes zero, without the bias of
        peeking. The interval at ``confidence`` (honest widening included) is stretched by the
        ratio of the asymptotic confidence sequence of Waudby-Smith et al. (2021, normal
        mixture, tightest near ``horizon`` rows) to the fixed-n normal half-width at this
        estimate's number of rows."""
        lo, hi = self.interval(confidence)
        stretch = sequence_stretch(max(self.n, 1), 1.0 - confidence, horizon)
        return self.value - stretch * (self.value - lo), self.value + stretch * (hi - self.value)

    def as_dict(self) -> dict[str, object]:
        """The estimate as JSON-able data: value, 95 % interval, what it rests on, ``usable``."""
        return {
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "se": self.se,
            "ess": self.ess,
            "n": self.n,
            "matched": self.matched,
            "events": self.events,
            "max_weight": self.max_weight,
            "usable": self.usable,
            "warnings": list(self.warnings),
        }


# -- building blocks ---------------------------------------------------------------------
def check_propensities(p: Floats) -> Floats:
    p = np.asarray(p, dtype=np.float64)
    if len(p) == 0:
        raise InvalidInput("no logged decisions to evaluate on")
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInput(f"propensity of row {i} is {p[i]!r}; every propensity must be in (0, 1]")
    return p


def effective_rows(w: Floats) -> float:
    s2 = float(np.sum(w**2))
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def sequence_stretch(n: float, alpha: float, horizon: float) -> float:
    """How much wider a two-sided (1 - alpha) asymptotic confidence sequence is than the
    fixed-n normal interval after ``n`` observations (Waudby-Smith et al. 2021, the normal
    mixture boundary with rho tuned for ``horizon`` observations; never narrower)."""
    rho2 = (-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / horizon
    t = n * rho2
    half = math.sqrt(2.0 * (t + 1.0) / (n * rho2) * math.log(math.sqrt(t + 1.0) / alpha))
    return max(1.0, half / z_of(1.0 - alpha))


def z_of(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def gamma_interval(sizes: Floats, potential: Floats, confidence: float) -> tuple[float, float]:
    """Fay–Feuer interval for the mean of a sum of rare events: ``sizes`` are the observed
    events' contributions (0 where none), ``potential`` what an event on each row would
    contribute at most (0 where none could happen)."""
    alpha = 1.0 - confidence
    y = float(np.sum(sizes))
    v = float(np.sum(sizes * sizes))
    pos = potential > 0
    if not pos.any():
        return 0.0, 0.0
    cp = potential[pos]
    add = _extra_event(cp)
    from scipy import stats  # imported on first use: most commands never need it

    lo = 0.0 if y <= 0 or v <= 0 else float(stats.gamma.ppf(alpha / 2, y * y / v, scale=v / y))
    hi = float(
        stats.gamma.ppf(
            1 - alpha / 2, (y + add) ** 2 / (v + add**2), scale=(v + add**2) / (y + add)
        )
    )
    return lo, hi


def reward_scale(rewards: Floats, reward_max: float | None) -> float:
    r_max = float(np.max(rewards)) if len(rewards) else 0.0
    bound = max(r_max, reward_max or 0.0)
    return bound if bound > 0 else 1.0


def evidence_warnings(
    ess: float, wmax: float, events: int, evidence: Evidence
) -> tuple[tuple[str, ...], bool]:
    notes = []
    thin = False
    if ess < evidence.min_ess:
        notes.append(
            f"effective sample size {ess:.0f} < {evidence.min_ess:g}: the weights rest on few rows"
        )
        thin = True
    if events < evidence.min_events:
        notes.append(
            f"only {events} rewarded rows where the policy could have chosen the logged offer "
            f"(< {evidence.min_events}): the interval is wide and the value uncertain"
        )
        thin = True
    if wmax > HEAVY_WEIGHT:
        notes.append(
            f"importance weights up to {wmax:,.0f}: the logging policy rarely showed what this "
            "policy prefers"
        )
    return tuple(notes), thin


def hull(*intervals: tuple[float, float]) -> tuple[float, float]:
    return min(i[0] for i in intervals), max(i[1] for i in intervals)


def normal_or(value: float, se: float, other: Bounds) -> Bounds:
    """The hull of the normal interval around ``value`` and ``other``: never narrower than
    either."""

    def bounds(confidence: float) -> tuple[float, float]:
        z = z_of(confidence)
        return hull((value - z * se, value + z * se), other(confidence))

    return bounds


@dataclass(frozen=True)
class Rows:
    """The arrays every estimator works on."""

    w: Floats  # target probability of the logged offer / logged propensity
    r: Floats
    bound: float  # a bound on one reward
    n: int
    evidence: Evidence = EVIDENCE

    @property
    def events(self) -> int:
        return int(np.sum((self.w != 0) & (self.r > 0)))


def rows_of(
    target: Floats,
    propensities: Floats,
    rewards: Floats,
    reward_max: float | None,
    evidence: Evidence,
) -> Rows:
    p = check_propensities(propensities)
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) != len(p) or len(np.asarray(target)) != len(p):
        raise InvalidInput(
            f"{len(p)} propensities, {len(r)} rewards and {len(np.asarray(target))} target "
            "probabilities: one of each per logged decision"
        )
    w = np.asarray(target, dtype=np.float64) / p
    return Rows(w, r, reward_scale(r, reward_max), len(p), evidence)


def rare_interval(rows: Rows, normaliser: float) -> Bounds:
    """The rare-event interval of ``Σ w r / normaliser`` (``w ≥ 0``)."""
    w, r, b = rows.w, rows.r, rows.bound

    def bounds(confidence: float) -> tuple[float, float]:
        return gamma_interval(w * r / normaliser, w * b / normaliser, confidence)

    return bounds


def estimate_of(
    value: float, se: float, rows: Rows, bounds: Bounds, weights: Floats | None = None
) -> Estimate:
    w = rows.w if weights is None else weights
    ess = effective_rows(w)
    wmax = float(np.max(np.abs(w))) if len(w) else 0.0
    events = rows.events
    notes, thin = evidence_warnings(ess, wmax, events, rows.evidence)
    lo, hi = bounds(0.95)
    return Estimate(
        value=value,
        lower=lo,
        upper=hi,
        se=se,
        ess=ess,
        n=rows.n,
        matched=float(np.mean(w != 0)),
        events=events,
        max_weight=wmax,
        warnings=notes,
        thin=thin,
        _bounds=bounds,
    )


def excess(rows: Rows, normaliser: float, confidence: float) -> tuple[float, float]:
    """How far the rare-event interval of ``Σ w r / normaliser`` reaches beyond its own
    normal interval, below and above: the part of the risk a normal interval misses when
    the rewards behind it are few."""
    t = rows.w * rows.r / normaliser
    point = float(t.sum())
    se = math.sqrt(float(np.sum((t - point / rows.n) ** 2))) if rows.n > 1 else math.inf
    lo, hi = rare_interval(rows, normaliser)(confidence)
    z = z_of(confidence)
    return max(0.0, point - lo - z * se), max(0.0, hi - point - z * se)


def widened(value: float, se: float, parts: Sequence[tuple[Rows, float, int]]) -> Bounds:
    """The normal interval around ``value`` widened by each reward-carrying part's excess
    (``parts``: rows, normaliser, sign of the part in the estimate). With several parts
    each is taken at its share of the risk."""

    def bounds(confidence: float) -> tuple[float, float]:
        z = z_of(confidence)
        lo, hi = value - z * se, value + z * se
        each = 1.0 - (1.0 - confidence) / len(parts)
        for rows, normaliser, sign in parts:
            down, up = excess(rows, normaliser, each)
            lo, hi = (lo - down, hi + up) if sign > 0 else (lo - up, hi + down)
        return lo, hi

    return bounds


def _extra_event(cp: Floats) -> float:
    """The size of the one event more than observed: the geometric mean of the largest
    potential contribution and the contribution-weighted mean one."""
    return math.sqrt(float(cp.max()) * float(np.sum(cp**2) / np.sum(cp)))
