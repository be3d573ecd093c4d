"""The thin façade that wires one offerloop: settings, clock, backend, campaigns, registry,
deployments, decisions and metrics. Each concern lives in its own module; this only joins."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from offerloop._clock import Clock, clock_of
from offerloop._errors import BackendUnavailable, NotFound
from offerloop._metrics import Metrics
from offerloop._periodic import Periodic
from offerloop._settings import Settings
from offerloop._version import __version__
from offerloop.backends import (
    OFFER_OUTCOME,
    Backend,
    DecisionRecord,
    EventRecord,
    open_backend,
)
from offerloop.backends._journal import DECISIONS, EVENTS, DecisionJournal, EventJournal
from offerloop.backends._replicated import LogJournal, ReplicatedLog
from offerloop.campaigns import Campaign, default_campaign_path, load_campaigns
from offerloop.decisions import Decider, Decision, WorkerSink
from offerloop.events import (
    AttributionRules,
    EventIn,
    IngestResult,
    Reward,
)
from offerloop.events._intake import EventIntake, price_shown
from offerloop.features import (
    Aggregate,
    ColumnarStore,
    SinceLast,
    columnar_properties,
    load_features,
)
from offerloop.features._player import PlayerFeatures
from offerloop.registry import Deployments, Registry
from offerloop.registry._day_one import bootstrap

__all__ = ["Offerloop"]

_log = logging.getLogger("offerloop")


class Offerloop:
    """One offerloop instance over one backend. Thread-safe for serving."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, backend: Backend | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or clock_of(settings.clock)
        self.features = load_features(settings.features)
        paths = settings.campaigns or (str(default_campaign_path()),)
        self.campaigns: dict[str, Campaign] = load_campaigns(paths, features=self.features.names)
        self.default_campaign = settings.default_campaign or next(iter(self.campaigns))
        if self.default_campaign not in self.campaigns:
            raise NotFound(f"default_campaign {self.default_campaign!r} is not a loaded campaign")
        self.backend = backend or open_backend(settings)
        self.metrics = Metrics()
        interval = settings.decision_log_flush_ms / 1000.0
        decision_errors = self._counter("append_decisions")
        event_errors = self._counter("append_events")
        decisions_quarantined = self._quarantine_counter("decision")
        events_quarantined = self._quarantine_counter("event")
        self.replicated: ReplicatedLog | None = None
        self.journal: DecisionJournal | LogJournal[DecisionRecord]
        self.event_journal: EventJournal | LogJournal[EventRecord]
        if settings.log_url:
            # the replicated log is the system of record: appended before each answer,
            # committed to the database by this process's consumers (backends._replicated)
            from offerloop.backends._nats import NatsLog

            log = self.replicated = NatsLog(
                settings.log_url, settings.log_stream, settings.log_replicas
            )
            self.journal = LogJournal(
                DECISIONS,
                log,
                self.backend,
                interval=interval,
                on_error=decision_errors,
                on_quarantine=decisions_quarantined,
            )
            self.event_journal = LogJournal(
                EVENTS,
                log,
                self.backend,
                interval=interval,
                on_error=event_errors,
                on_quarantine=events_quarantined,
            )
        else:
            # decisions not yet in the database (all of them briefly, with
            # decision_log=journal; only while the database is down otherwise), replayed by
            # the next process on a crash; event batches acknowledged while the database
            # cannot take them (under serve)
            self.journal = DecisionJournal(
                settings.data_dir,
                self.backend,
                interval=interval,
                sync=settings.decision_log_sync,
                on_error=decision_errors,
                on_quarantine=decisions_quarantined,
            )
            self.event_journal = EventJournal(
                settings.data_dir,
                self.backend,
                interval=interval,
                on_error=event_errors,
                on_quarantine=events_quarantined,
            )
        self.metrics.journal_backlog.labels("decision").set_function(self.journal.backlog)
        self.metrics.journal_backlog.labels("event").set_function(self.event_journal.backlog)
        self.registry = Registry(self.backend, self.clock)
        self.deployments = Deployments(
            self.backend, self.registry, self.clock, on_change=self._changed
        )
        self.player_features = PlayerFeatures(
            self.features, self.backend, self.clock, self.metrics, settings
        )
        self._background: list[Periodic] = []
        self._closed = False
        self._columnar: ColumnarStore | None = None
        self._columnar_lock = threading.Lock()
        attribution = AttributionRules(
            window_seconds=self.window_seconds,
            price_tolerance=settings.attribution_price_tolerance,
            max_purchases=settings.attribution_max_purchases,
            secret=settings.decision_token_secret.get_secret_value(),
            price_of=price_shown(self.campaigns),
        )
        self.events = EventIntake(
            self.backend,
            self.clock,
            settings,
            attribution,
            self.journal,
            self.event_journal,
            self.player_features,
            self.metrics,
            # offer-history features read the offer_outcome events written there
            offer_outcomes=OFFER_OUTCOME
            in {f.event for f in self.features.of_kind(Aggregate, SinceLast)},
            campaigns=self.campaigns,
        )
        for journal in (self.event_journal, self.journal):
            try:  # what a crashed process left journaled goes to the database first
                journal.flush()
            except BackendUnavailable:
                journal.start()  # retried in the background
        seed = None if settings.decision_seed < 0 else settings.decision_seed
        sink = None
        if settings.shadow_scoring == "process":
            sink = WorkerSink(settings, self.metrics, seed)
        self.decider = Decider(
            self.backend,
            self.player_features.of,
            self.campaigns,
            self.registry,
            self.deployments,
            self.clock,
            self.metrics,
            refresh_seconds=settings.deployment_refresh_seconds,
            seed=seed,
            default_features=self.player_features.defaults,
            journal=self.journal,
            journal_first=settings.decision_log == "journal" or bool(settings.log_url),
            shadow_sink=sink,
            compile_dir=settings.path / "compiled" if settings.compile_models else None,
            compile_after=settings.compile_after_decisions,
            token_secret=settings.decision_token_secret.get_secret_value(),
        )

    def start_background(self) -> None:
        """``offerloop serve``: move every wait on a store off the request path. Deployment
        state is re-read, the online state follows the log and batch sources are polled by
        background threads; a decision then touches no database at all."""
        if self._background:
            return
        for c in self.campaigns:
            with contextlib.suppress(BackendUnavailable):
                self.decider.refresh(c)
        self.decider.refresh_in_background()

        def refresh() -> None:
            for c in self.campaigns:
                self.decider.refresh(c)

        def count(what: str) -> Callable[[Exception], None]:
            return lambda exc: self.metrics.errors.labels(f"background_{what}").inc()

        s = self.settings
        player = self.player_features
        player.in_background = True
        self._background = [
            Periodic("offerloop-follow", player.follow, s.online_follow_seconds, count("follow")),
            Periodic(
                "offerloop-deployments",
                refresh,
                max(0.05, s.deployment_refresh_seconds),
                count("deployments"),
            ),
        ]
        if player.snapshot_path is not None:

            def snapshot() -> None:
                info = player.save_snapshot(if_changed=True)
                if info is not None:
                    _log.info(
                        "online state snapshot: %d players in %.2f s", info.players, info.seconds
                    )

            self._background.append(
                Periodic(
                    "offerloop-snapshot", snapshot, s.snapshot_interval_seconds, count("snapshot")
                )
            )
        if s.offline_store == "columnar" and s.columnar_sync_seconds > 0:
            self._background.append(
                Periodic(
                    "offerloop-columnar",
                    self.sync_columnar,
                    s.columnar_sync_seconds,
                    count("columnar"),
                    # not while the service starts: a first export of a long log is minutes
                    # of work that would compete with the restore for the interpreter
                    first_after=s.columnar_sync_seconds,
                )
            )
        if player.batch_sources.sources:
            self._background.append(
                Periodic("offerloop-batches", player.poll_batches, max(0.1, s.batch_poll_seconds))
            )
        for task in self._background:
            task.start()

    def _counter(self, operation: str) -> Callable[[Exception], None]:
        return lambda exc: self.metrics.backend_errors.labels("database", operation).inc()

    def _quarantine_counter(self, kind: str) -> Callable[[int], None]:
        return lambda n: self.metrics.quarantined.labels(kind).inc(n)

    def columnar(self) -> ColumnarStore | None:
        """The columnar event store under data_dir (``offline_store`` columnar; None with
        ``log``), opened on first use. Callers bring it up to date with ``sync``."""
        if self.settings.offline_store != "columnar":
            return None
        with self._columnar_lock:
            if self._columnar is None:
                self._columnar = ColumnarStore(
                    self.settings.path / "columnar", columnar_properties(self.features)
                )
                if self._columnar.reset_reason:
                    _log.warning("columnar store: %s", self._columnar.reset_reason)
            return self._columnar

    def sync_columnar(self) -> None:
        """Append the log's new events to the columnar store and merge its small files."""
        store = self.columnar()
        if store is not None:
            self.commit_journals()  # what was acknowledged is in the log, then in the store
            store.sync(self.backend)
            store.compact()

    def flush_shadows(self) -> int:
        """Commit every decision answered so far to the database (the journal commits in
        batches) and score their shadows (scored in batches after the answer); judges and
        reports call this first."""
        self.commit_journals()
        return self.decider.shadows.flush()

    def commit_journals(self) -> None:
        """Commit the decisions and events journaled so far (the journals commit in batches,
        in the background); while the database is down they stay journaled and retried."""
        with contextlib.suppress(BackendUnavailable):
            self.journal.flush()
            self.event_journal.flush()

    def close(self) -> None:
        """Stop the background tasks, commit what is journaled, close every store (once: a
        second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        for task in self._background:
            task.stop()
        self._background = []
        self.decider.shadows.close()
        self.journal.close()
        self.event_journal.close()
        if self.replicated is not None:
            self.replicated.close()
        self.player_features.close()
        self.backend.close()

    def health(self) -> dict[str, Any]:
        """Whether this process serves and how its dependencies are, from memory only (the
        breakers' states, the journal's backlog): never waits on a store."""
        deps: dict[str, str] = {}
        breaker = getattr(self.backend, "breaker", None)
        deps["database"] = breaker.state if breaker is not None else "ok"
        if self.player_features.redis is not None:
            deps["online_store"] = self.player_features.redis.breaker.state
        ok = all(v == "ok" for v in deps.values())
        return {
            "status": "ok" if ok else "degraded",
            "backend": self.backend.name,
            "version": __version__,
            "dependencies": deps,
            "decisions_not_yet_stored": self.journal.backlog(),
            "events_not_yet_stored": self.event_journal.backlog(),
        }

    @property
    def attribution(self) -> AttributionRules:
        """The attribution rules ingest and every reader of revenue apply (one object)."""
        return self.events.attribution

    @attribution.setter
    def attribution(self, rules: AttributionRules) -> None:
        self.events.attribution = rules

    @property
    def window_seconds(self) -> float:
        """The attribution window in seconds: a decision's reward is final this long after."""
        return self.settings.attribution_window_hours * 3600.0

    def campaign(self, campaign_id: str | None) -> Campaign:
        """A loaded campaign (the default one for None); NotFound for an unknown id."""
        return self.decider.campaign(campaign_id or self.default_campaign)

    # -- day one -------------------------------------------------------------------------
    def bootstrap(self, actor: str = "bootstrap") -> None:
        """Release the day-one policy of every campaign never deployed
        (``registry.bootstrap``)."""
        bootstrap(
            self.campaigns.values(),
            self.features,
            self.settings,
            self.registry,
            self.deployments,
            actor,
        )
        self.decider.invalidate()

    # -- events and decisions ------------------------------------------------------------
    def ingest(self, events: Sequence[EventIn]) -> IngestResult:
        """Validate, store and fold a batch of events (``events.EventIntake.ingest``)."""
        return self.events.ingest(events)

    def decide(
        self, player_id: str, campaign: str | None = None, context: Mapping[str, Any] | None = None
    ) -> Decision:
        """Choose an offer for a player (default campaign for None), log the decision with
        its propensity and, with offer-history features, count it as seen at once."""
        decision = self.decider.decide(player_id, campaign or self.default_campaign, context)
        self.events.seen(decision.record)
        return decision

    def decision(self, decision_id: str) -> tuple[DecisionRecord, Reward]:
        """A logged decision and its reward so far (``events.EventIntake.decision``)."""
        return self.events.decision(decision_id)

    # -- deployment ----------------------------------------------------------------------
    def _changed(self, campaign: str, action: str) -> None:
        """``Deployments.on_change``: count the transition, re-read deployments at once."""
        self.metrics.transitions.labels(campaign, action).inc()
        self.decider.invalidate()
