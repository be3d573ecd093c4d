"""A decision's logged scoring time is the CPU time its policy took, not the wall time: the
latency guardrail judges what a model costs, and a busy host (or a policy waiting on
something) does not count against it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import pytest

from offerloop import ManualClock, Offerloop, Settings
from offerloop.policies import Policy
from offerloop.policies._base import FeatureRow, Floats
from tests.conftest import open_system


class _Sleepy(Policy):
    """Waits 30 ms without using the CPU (as a descheduled thread on a busy host would)."""

    def act(self, features: FeatureRow) -> Floats:
        time.sleep(0.03)
        return np.full(len(self.offers), 1.0 / len(self.offers))


class _Busy(Policy):
    """Burns 20 ms of this thread's CPU time."""

    def act(self, features: FeatureRow) -> Floats:
        start = time.thread_time()
        x = 0
        while time.thread_time() - start < 0.02:
            x += 1
        return np.full(len(self.offers), 1.0 / len(self.offers))


@pytest.fixture
def embedded(settings: Settings, clock: ManualClock) -> Iterator[Offerloop]:
    with open_system("embedded", settings, clock) as s:
        yield s


def _serve_with(system: Offerloop, policy: Policy) -> float:
    """The logged scoring time of one decision served by ``policy`` as the release."""
    campaign = system.default_campaign
    system.decide("p-warm", campaign)  # the deployment state is cached from here on
    live = system.decider.cached(campaign)
    assert live is not None
    assert live.released is not None
    version = live.released[0]
    system.decider._live[campaign] = dataclasses.replace(live, released=(version, policy))
    decision = system.decide("p-1", campaign)
    return decision.record.score_ms


def test_waiting_is_not_scoring_time(embedded: Offerloop) -> None:
    offers = embedded.campaign(None).offer_ids
    ms = _serve_with(embedded, _Sleepy(offers))
    assert ms < 15.0, f"{ms:.2f} ms logged for a policy that slept 30 ms on no CPU"


def test_cpu_spent_scoring_is_logged(embedded: Offerloop) -> None:
    offers = embedded.campaign(None).offer_ids
    ms = _serve_with(embedded, _Busy(offers))
    assert ms >= 20.0, f"{ms:.2f} ms logged for a policy that burned 20 ms of CPU"
