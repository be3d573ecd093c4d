"""Monitoring: Prometheus metrics from day one."""

from offerloop.monitoring._metrics import LATENCY_BUCKETS, Metrics

__all__ = ["LATENCY_BUCKETS", "Metrics"]
