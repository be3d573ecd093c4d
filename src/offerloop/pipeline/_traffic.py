"""How much traffic a candidate earns from its evidence: the probability that it beats the
release, within the settings' bounds (the same rule for the gate and the controller)."""

from __future__ import annotations

from statistics import NormalDist

from offerloop._settings import Settings
from offerloop.training import Estimate

__all__ = ["better_probability", "share_for", "share_of"]

_Z95 = NormalDist().inv_cdf(0.975)


def better_probability(diff: Estimate) -> float:
    """P(uplift > 0) read off a paired estimate's honest 95 % interval as if normal (0.5 when
    the evidence is too thin to lean either way)."""
    if not diff.usable:
        return 0.5
    sd = (diff.upper - diff.lower) / (2.0 * _Z95)
    if sd <= 0:
        return 1.0 if diff.value > 0 else 0.0 if diff.value < 0 else 0.5
    return NormalDist().cdf(diff.value / sd)


def share_for(diff: Estimate | None, s: Settings, at_most: float = 1.0) -> float:
    """The canary share ``diff`` (uplift over the release) earns: Thompson-style, the share of
    traffic is the probability of being better (no more than ``at_most``, another estimate of
    that probability), kept within [canary_share, canary_max_share] and rounded to whole
    percent so small wobbles do not rewrite the deployment."""
    return share_of(min(better_probability(diff), at_most) if diff is not None else 0.0, s)


def share_of(p: float, s: Settings) -> float:
    """A probability of being better as a canary share within the settings' bounds."""
    return round(min(s.canary_max_share, max(s.canary_share, p)), 2)
