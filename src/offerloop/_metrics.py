"""Prometheus metrics, one registry per running system (no global state between instances).

Names follow Prometheus conventions: base units (seconds), ``_total`` counters, and no
high-cardinality labels (never a player id; routes are templates, not raw paths).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["LATENCY_BUCKETS", "Metrics"]

# Seconds; 0.005 is the decision latency budget.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
)  # fine below 10 ms: the decision budget is 1-2 ms (issue 8)


class Metrics:
    """The Prometheus metrics of one running system, in a registry of its own (``registry``):
    nothing is shared between instances."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "offerloop_http_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "offerloop_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "offerloop_decisions",
            "Decisions served.",
            ["campaign", "model_version", "mode", "offer"],
            registry=r,
        )
        self.shadow_scores = Counter(
            "offerloop_shadow_scores",
            "Decisions scored by a shadow version (never shown).",
            ["campaign", "model_version"],
            registry=r,
        )
        self.decision_duration = Histogram(
            "offerloop_decision_duration_seconds",
            "Server-side time of a decision: features, policies and durable log.",
            ["campaign"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feature_duration = Histogram(
            "offerloop_feature_lookup_duration_seconds",
            "Time to compute a player's features.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feature_freshness = Histogram(
            "offerloop_feature_freshness_seconds",
            "Age of the newest event behind a served feature vector, at decision time "
            "(how stale served features are).",
            buckets=(0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0),
            registry=r,
        )
        self.exploration = Counter(
            "offerloop_exploration_decisions",
            "Decisions whose offer was not the serving policy's most likely one (exploration).",
            ["campaign", "model_version"],
            registry=r,
        )
        self.feature_update_duration = Histogram(
            "offerloop_feature_update_duration_seconds",
            "Time to fold an ingested batch into the online feature state (after the commit).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feature_fallbacks = Counter(
            "offerloop_feature_fallbacks",
            "Feature source lookups answered from the last value or the default, by reason.",
            ["source", "reason"],
            registry=r,
        )
        self.events = Counter(
            "offerloop_events",
            "Events received, by outcome (accepted, duplicate, journaled: acknowledged while the "
            "database could not take them, committed later).",
            ["outcome"],
            registry=r,
        )
        self.errors = Counter(
            "offerloop_errors",
            "Errors by kind (client errors and backend faults).",
            ["kind"],
            registry=r,
        )
        self.policy_errors = Counter(
            "offerloop_policy_errors",
            "Decisions a canary or shadow version failed to score (the release served instead).",
            ["campaign", "model_version", "mode"],
            registry=r,
        )
        self.backend_errors = Counter(
            "offerloop_backend_errors",
            "Faults of our own dependencies, by backend (database, online_store) and operation.",
            ["backend", "operation"],
            registry=r,
        )
        self.fallbacks = Counter(
            "offerloop_fallback_decisions",
            "Decisions served by a fallback, by reason: features (online store down: default "
            "values), canary or release (failed to score), log_journaled (database down: "
            "journaled locally until it is back), no_eligible_offer (the campaign's default "
            "answered), caps (the database could not apply the frequency caps).",
            ["campaign", "reason"],
            registry=r,
        )
        self.pipeline_runs = Counter(
            "offerloop_pipeline_runs",
            "Pipeline runs by outcome: finished, failed, or skipped (a scheduled firing found the "
            "lock held).",
            ["outcome"],
            registry=r,
        )
        self.transitions = Counter(
            "offerloop_deployment_transitions",
            "Deployment changes applied.",
            ["campaign", "action"],
            registry=r,
        )
        self.released_info = Gauge(
            "offerloop_deployed_version",
            "1 for each deployed version, by mode.",
            ["campaign", "model_version", "mode"],
            registry=r,
        )

        self.shed = Counter(
            "offerloop_shed_requests",
            "Requests shed unserved (503 + Retry-After), by class: decide (the event loop was "
            "running late), write, read, slow (too much work of that class in flight).",
            ["class"],
            registry=r,
        )
        self.request_timeouts = Counter(
            "offerloop_request_timeouts",
            "Requests answered 503 because their work did not finish in time, by class.",
            ["class"],
            registry=r,
        )
        self.connection_timeouts = Counter(
            "offerloop_connection_timeouts",
            "Connections closed by the server: a request's headers or body arrived too slowly "
            "(slow), or the connection sat idle (idle).",
            ["reason"],
            registry=r,
        )
        self.quarantined = Counter(
            "offerloop_quarantined_records",
            "Records a store refused for good (see `offerloop quarantine`), by kind.",
            ["kind"],
            registry=r,
        )
        self.purchases = Counter(
            "offerloop_purchases",
            "Purchase events by attribution: attributed, pending (decision not found yet), "
            "unattributed (no decision_id) or the reason it does not count (unknown_decision, "
            "other_player, before_decision, outside_window, price_mismatch, bad_token).",
            ["attribution"],
            registry=r,
        )
        self.online_lag_events = Gauge(
            "offerloop_online_lag_events",
            "Events in the log that the online feature state has not folded yet.",
            registry=r,
        )
        self.online_lag_seconds = Gauge(
            "offerloop_online_lag_seconds",
            "How long the oldest event not yet folded into the online state has waited.",
            registry=r,
        )
        self.online_snapshot_at = Gauge(
            "offerloop_online_snapshot_timestamp_seconds",
            "When this process last wrote a snapshot of the online state (clock time; 0: never).",
            registry=r,
        )
        self.online_start = Gauge(
            "offerloop_online_start_seconds",
            "How long building the online state took at start: a snapshot and the log's tail, "
            "or the whole log.",
            ["source"],
            registry=r,
        )
        self.online_deferred = Counter(
            "offerloop_online_deferred_events",
            "Events stored but not folded at ingest (online store unavailable): the online "
            "state folds them from the log when it is back.",
            registry=r,
        )
        self.dependency_up = Gauge(
            "offerloop_dependency_up",
            "1 while a dependency answers, 0 while its circuit breaker is open.",
            ["dependency"],
            registry=r,
        )
        self.journal_backlog = Gauge(
            "offerloop_journal_backlog",
            "Records acknowledged but not yet committed to the database (read at scrape time): "
            "decision (always briefly under serve), event (only while the database is down).",
            ["journal"],
            registry=r,
        )

    def render(self) -> bytes:
        """Every metric of the registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
