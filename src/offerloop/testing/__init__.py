"""Test kit, public so that third-party backends, policies and deployments can use it: the
conformance suites, a TCP proxy that injects real network faults, and a wait for a started
service."""

from offerloop.testing._backends import BackendConformance
from offerloop.testing._policies import PolicyCase, PolicyConformance, policy_cases
from offerloop.testing._proxy import FaultProxy
from offerloop.testing._service import wait_healthy

__all__ = [
    "BackendConformance",
    "FaultProxy",
    "PolicyCase",
    "PolicyConformance",
    "policy_cases",
    "wait_healthy",
]
