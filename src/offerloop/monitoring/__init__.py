"""Monitoring: Prometheus metrics from day one; business metrics with delayed labels, drift
and data quality, and the dashboard and report that show them."""

from offerloop._metrics import LATENCY_BUCKETS, Metrics
from offerloop.monitoring._business import (
    calibration,
    conversion_by_offer,
    matured_rewards,
    revenue_by_version,
    shadow_estimates,
)
from offerloop.monitoring._dashboard import render_dashboard, write_report
from offerloop.monitoring._drift import drift_report, js_divergence, psi, state_of
from offerloop.monitoring._monitor import Monitor, histogram_quantiles

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "Monitor",
    "calibration",
    "conversion_by_offer",
    "drift_report",
    "histogram_quantiles",
    "js_divergence",
    "matured_rewards",
    "psi",
    "render_dashboard",
    "revenue_by_version",
    "shadow_estimates",
    "state_of",
    "write_report",
]
