"""Conformance suites, public so that third-party backends and policies can run them."""

from offerloop.testing._backends import BackendConformance
from offerloop.testing._policies import PolicyConformance

__all__ = ["BackendConformance", "PolicyConformance"]
