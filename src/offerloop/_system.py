"""The thin façade that wires one offerloop: settings, clock, backend, campaigns, registry,
deployments, decisions and metrics. Each concern lives in its own module; this only joins."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from offerloop._clock import Clock, clock_of, parse_rfc3339
from offerloop._errors import BackendUnavailable, NotFound
from offerloop._metrics import Metrics
from offerloop._periodic import Periodic
from offerloop._settings import Settings, parse_buckets
from offerloop._version import __version__
from offerloop.backends import (
    OFFER_OUTCOME,
    Backend,
    DecisionRecord,
    EventRecord,
    open_backend,
)
from offerloop.backends._journal import DecisionJournal, EventJournal
from offerloop.campaigns import Campaign, default_campaign_path, load_campaigns
from offerloop.decisions import Decider, Decision, WorkerSink
from offerloop.events import (
    ATTRIBUTED,
    AttributionRules,
    EventIn,
    IngestResult,
    Reward,
    attribute,
    ingest,
)
from offerloop.events._ingest import classified, prepare, result
from offerloop.events._offers import bought_event, seen_event
from offerloop.features import (
    Aggregate,
    Encoder,
    SinceLast,
    load_features,
)
from offerloop.features._player import PlayerFeatures
from offerloop.policies import BucketBeta, RandomPolicy, RulesPolicy, ThompsonSampling
from offerloop.registry import SHADOW, Deployments, Registry

__all__ = ["Offerloop"]


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
        # decisions not yet in the database (all of them briefly, with decision_log=journal;
        # only while the database is down otherwise), replayed by the next process on a crash
        self.journal = DecisionJournal(
            settings.data_dir,
            self.backend,
            interval=settings.decision_log_flush_ms / 1000.0,
            sync=settings.decision_log_sync,
            on_error=lambda exc: self.metrics.backend_errors.labels(
                "database", "append_decisions"
            ).inc(),
            on_quarantine=lambda n: self.metrics.quarantined.labels("decision").inc(n),
        )
        # event batches acknowledged while the database cannot take them (under serve)
        self.event_journal = EventJournal(
            settings.data_dir,
            self.backend,
            interval=settings.decision_log_flush_ms / 1000.0,
            on_error=lambda exc: self.metrics.backend_errors.labels(
                "database", "append_events"
            ).inc(),
            on_quarantine=lambda n: self.metrics.quarantined.labels("event").inc(n),
        )
        self._journal_events = settings.decision_log == "journal"
        # offer-history features read the offer_outcome events written here (events._offers)
        self._offer_outcomes = OFFER_OUTCOME in {
            f.event for f in self.features.of_kind(Aggregate, SinceLast)
        }
        self.registry = Registry(self.backend, self.clock)
        self.deployments = Deployments(
            self.backend, self.registry, self.clock, on_change=self._changed
        )
        self.player_features = PlayerFeatures(
            self.features, self.backend, self.clock, self.metrics, settings
        )
        self._background: list[Periodic] = []
        self.attribution = AttributionRules(
            window_seconds=self.window_seconds,
            price_tolerance=settings.attribution_price_tolerance,
            max_purchases=settings.attribution_max_purchases,
            secret=settings.decision_token_secret,
            price_of=self._price_of,
        )
        self._earliest = parse_rfc3339(settings.earliest_event_ts)
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
            journal_first=settings.decision_log == "journal",
            shadow_sink=sink,
            compile_dir=settings.path / "compiled" if settings.compile_models else None,
            compile_after=settings.compile_after_decisions,
            token_secret=settings.decision_token_secret,
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
        if player.batch_sources.sources:
            self._background.append(
                Periodic("offerloop-batches", player.poll_batches, s.batch_poll_seconds)
            )
        for task in self._background:
            task.start()

    def flush_shadows(self) -> int:
        """Commit every decision answered so far to the database (the journal commits in
        batches) and score their shadows (scored in batches after the answer); judges and
        reports call this first."""
        with contextlib.suppress(BackendUnavailable):  # they stay journaled; retried
            self.journal.flush()
            self.event_journal.flush()
        return self.decider.shadows.flush()

    def close(self) -> None:
        """Stop the background tasks, commit what is journaled, close every store."""
        for task in self._background:
            task.stop()
        self._background = []
        self.decider.shadows.close()
        self.journal.close()
        self.event_journal.close()
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
    def window_seconds(self) -> float:
        """The attribution window in seconds: a decision's reward is final this long after."""
        return self.settings.attribution_window_hours * 3600.0

    def campaign(self, campaign_id: str | None) -> Campaign:
        """A loaded campaign (the default one for None); NotFound for an unknown id."""
        return self.decider.campaign(campaign_id or self.default_campaign)

    # -- day one -------------------------------------------------------------------------
    def bootstrap(self, actor: str = "bootstrap") -> None:
        """For a campaign never deployed: release the day-one policy. With
        ``day_one_rules_share`` 0 (or a campaign without rules) that is uniform random, and the
        pure ``rules`` run in shadow; otherwise it is the rules mixed with uniform exploration
        (no pure rules in shadow: deterministic, they could be released and end exploration)."""
        share = self.settings.day_one_rules_share
        for c in self.campaigns.values():
            if self.backend.transitions(c.id):
                continue
            src = {"source": "bootstrap"}
            if self.settings.day_one == "thompson" and not (share > 0 and c.rules):
                first = self.registry.register(c.id, self._prior_thompson(c), src)
                reason = (
                    "day one: Thompson sampling under the uninformative prior, "
                    f"{self.settings.day_one_explore:.0%} uniform"
                )
                self.deployments.release(first.version, actor=actor, reason=reason)
                if c.rules:
                    rules = self.registry.register(c.id, RulesPolicy.from_campaign(c), src)
                    self.deployments.deploy(rules.version, SHADOW, actor=actor, reason=reason)
                continue
            if share > 0 and c.rules:
                first = self.registry.register(
                    c.id, RulesPolicy.from_campaign(c, explore=1.0 - share), src
                )
                reason = f"day one: the rules on {share:.0%} of decisions, the rest uniform"
                self.deployments.release(first.version, actor=actor, reason=reason)
                continue
            reason = "day one: random explores, rules run in shadow"
            rnd = self.registry.register(c.id, RandomPolicy(c.offer_ids), src)
            rules = self.registry.register(c.id, RulesPolicy.from_campaign(c), src)
            self.deployments.release(rnd.version, actor=actor, reason=reason)
            self.deployments.deploy(rules.version, SHADOW, actor=actor, reason=reason)
        self.decider.invalidate()

    def _prior_thompson(self, c: Campaign) -> ThompsonSampling:
        """The thompson learner before any data: every bucket has the prior's probabilities."""
        model = BucketBeta(
            c.offer_ids,
            [o.price for o in c.offers],
            Encoder.of(self.features).spec(),
            [[n, list(cuts)] for n, cuts in parse_buckets(self.settings.thompson_buckets)],
        )
        return ThompsonSampling(c.offer_ids, model, floor=self.settings.day_one_explore)

    # -- events and decisions ------------------------------------------------------------
    def ingest(self, events: Sequence[EventIn]) -> IngestResult:
        """Validate and store a batch (durable on return), then fold it into the online
        state. If the online store cannot take it now, the events stay stored and the state
        catches up from the log when the store is back (``online == "deferred"``)."""
        found: dict[str, DecisionRecord] = {}  # the decisions the purchases name, looked up once
        try:
            result = ingest(
                self.backend,
                events,
                self.clock,
                self.settings.max_batch_events,
                self.settings.max_future_seconds,
                earliest=self._earliest,
                classify=lambda purchases, now: self._classify(purchases, now, found),
                derive=(lambda records: self._bought(records, found))
                if self._offer_outcomes
                else None,
            )
        except BackendUnavailable:
            if not self._journal_events:
                raise
            return self._ingest_journaled(events)
        online = "updated" if self.player_features.fold(result.stored) else "deferred"
        self.metrics.events.labels("accepted").inc(result.accepted)
        self.metrics.events.labels("duplicate").inc(result.duplicates)
        for e in result.stored:
            if e.type == "purchase":
                self.metrics.purchases.labels(e.attribution or "unattributed").inc()
        self.player_features.follow_if_due()
        return replace(result, online=online)

    def _ingest_journaled(self, events: Sequence[EventIn]) -> IngestResult:
        """``offerloop serve`` with the database unavailable: the batch is validated as
        always, journaled locally and fsynced before the answer (``backends._journal``),
        committed when the database is back, and folded into the online state from the log
        then (``features._follow``). Purchases naming a decision are ``pending``: their
        verdict is taken again when revenue is read."""
        now = self.clock.now()
        s = self.settings
        records = prepare(events, now, s.max_batch_events, s.max_future_seconds, self._earliest)
        found: dict[str, DecisionRecord] = {}
        records, verdicts = classified(
            records, now, lambda purchases, now: self._classify_offline(purchases, now, found)
        )
        extra = self._bought(records, found) if self._offer_outcomes else []
        known = self.event_journal.find([r.event_id for r in records + extra])
        seen: set[str] = set()
        new = []
        for r in records + extra:
            if r.event_id not in known and r.event_id not in seen:
                seen.add(r.event_id)
                new.append(r)
        self.event_journal.append_many(new, sync=True)
        done = result(records, new, verdicts, online="deferred", durable="journal")
        self.metrics.events.labels("journaled").inc(done.accepted)
        self.metrics.events.labels("duplicate").inc(done.duplicates)
        self.metrics.online_deferred.inc(len(new))
        return done

    @staticmethod
    def _bought(
        records: Sequence[EventRecord], found: Mapping[str, DecisionRecord]
    ) -> list[EventRecord]:
        """The ``offer_outcome`` events of the purchases attributed to a decision
        (``events._offers``), stored with them; ``found``: the decisions classification
        looked up."""
        return [
            bought_event(r, found[r.decision_id])
            for r in records
            if r.attribution == ATTRIBUTED and r.decision_id and r.decision_id in found
        ]

    def _seen(self, record: DecisionRecord) -> None:
        """A decision's ``offer_outcome`` event: journaled (committed with the next batch,
        never a database round trip on the request path) and folded into the online state
        now, so the player's next decision counts it. The follower folds the committed copy
        again later as a no-op (``features._online``: an entry is folded once per event id)."""
        event = seen_event(record)
        self.event_journal.append(event)
        self.player_features.fold([event])  # if it fails, the follower folds it from the log

    def _classify_offline(
        self, purchases: Sequence[EventRecord], now: float, found: dict[str, DecisionRecord]
    ) -> Mapping[str, str]:
        """Verdicts without the database: decisions still in this process's journal are
        checked; the others are pending (or unknown, when their id is not a recent one).
        The decisions found are added to ``found``."""
        ids = list({e.decision_id for e in purchases if e.decision_id})
        found.update(self.journal.find(ids))
        return self.attribution.classify(purchases, found, [], now)

    def _classify(
        self, purchases: Sequence[EventRecord], now: float, found: dict[str, DecisionRecord]
    ) -> Mapping[str, str]:
        """Attribution verdicts of purchases naming decisions (``events._attribution``):
        the decisions from the database, or from this process's journal if not yet
        committed. The decisions found are added to ``found``."""
        ids = list({e.decision_id for e in purchases if e.decision_id})
        found.update(self.journal.find(ids))  # first: see Offerloop.decision
        found.update(self.backend.get_decisions([i for i in ids if i not in found]))
        earlier = self.backend.purchases_for(list(found)) if found else []
        return self.attribution.classify(purchases, found, earlier, now)

    def _price_of(self, d: DecisionRecord) -> float | None:
        """The price an offer was shown at (recorded since the price column exists; for
        older decisions, the campaign's price of the offer)."""
        if d.price:
            return d.price
        c = self.campaigns.get(d.campaign)
        if c is None or not c.has_offer(d.offer_id):
            return None
        return float(c.offers[c.index(d.offer_id)].price)

    def decide(
        self, player_id: str, campaign: str | None = None, context: Mapping[str, Any] | None = None
    ) -> Decision:
        """Choose an offer for a player (default campaign for None), log the decision with
        its propensity and, with offer-history features, count it as seen at once."""
        decision = self.decider.decide(player_id, campaign or self.default_campaign, context)
        if self._offer_outcomes:
            self._seen(decision.record)
        return decision

    def decision(self, decision_id: str) -> tuple[DecisionRecord, Reward]:
        """A logged decision (from the database, or this process's journal until it is
        committed) and its reward so far. Never waits for shadow scoring: a decision read
        right after its answer shows its shadows once they are scored (``flush_shadows``)."""
        # the journal first: a decision leaves it only once committed, so it is in one or
        # the other at every moment
        record = self.journal.find([decision_id]).get(decision_id)
        if record is None:
            record = self.backend.get_decisions([decision_id]).get(decision_id)
        if record is None:
            raise NotFound(f"decision {decision_id!r} does not exist")
        reward = attribute(self.backend, [record], self.attribution, self.clock.now())
        return record, reward[decision_id]

    # -- deployment ----------------------------------------------------------------------
    def _changed(self, campaign: str, action: str) -> None:
        """``Deployments.on_change``: count the transition, re-read deployments at once."""
        self.metrics.transitions.labels(campaign, action).inc()
        self.decider.invalidate()
