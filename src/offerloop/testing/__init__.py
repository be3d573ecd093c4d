"""Test kit, public so that third-party backends, policies and deployments can use it: the
conformance suites, and a TCP proxy that injects real network faults."""

from offerloop.testing._backends import BackendConformance
from offerloop.testing._policies import PolicyConformance
from offerloop.testing._proxy import FaultProxy

__all__ = ["BackendConformance", "FaultProxy", "PolicyConformance"]
