"""The way in for events, as one service: a batch is validated, purchases naming a decision
get their attribution verdict, the batch is stored (durable on return; journaled locally
under ``serve`` when the database cannot take it), and what was stored is folded into the
served features. Also the lookup of one logged decision with its reward so far.

* **Attribution** reads the named decisions from this process's decision journal first (a
  decision leaves it only once committed, so it is in one or the other at every moment),
  then from the database; with the database down, decisions not in the journal are
  ``pending`` and their verdict is taken again when revenue is read.
* **Offer history:** when features read ``offer_outcome`` events, a purchase attributed to a
  decision is stored with its ``bought`` outcome, and every decision's ``seen`` outcome is
  journaled and folded at once (``events._offers``), so the player's next decision counts it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from offerloop._clock import Clock, parse_rfc3339
from offerloop._errors import BackendUnavailable, NotFound
from offerloop._metrics import Metrics
from offerloop._settings import Settings
from offerloop.backends import Backend, DecisionRecord, EventRecord
from offerloop.backends._journal import RecordJournal
from offerloop.campaigns import Campaign
from offerloop.events._attribution import ATTRIBUTED, AttributionRules
from offerloop.events._ingest import IngestResult, classified, ingest, prepare, result
from offerloop.events._offers import bought_event, seen_event
from offerloop.events._rewards import Reward, attribute
from offerloop.events._schema import EventIn
from offerloop.features import PlayerFeatures

__all__ = ["EventIntake", "price_shown"]


def price_shown(campaigns: Mapping[str, Campaign]) -> Callable[[DecisionRecord], float | None]:
    """The price a decision showed its offer at: recorded since the price column exists; for
    older decisions, the campaign's price of the offer (None: the offer is unknown)."""

    def price_of(d: DecisionRecord) -> float | None:
        if d.price:
            return d.price
        c = campaigns.get(d.campaign)
        if c is None or not c.has_offer(d.offer_id):
            return None
        return float(c.offers[c.index(d.offer_id)].price)

    return price_of


class EventIntake:
    """Events in, decisions looked up (see the module doc). ``offer_outcomes``: the feature
    definitions read ``offer_outcome`` events."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        settings: Settings,
        attribution: AttributionRules,
        journal: RecordJournal[DecisionRecord],
        event_journal: RecordJournal[EventRecord],
        player_features: PlayerFeatures,
        metrics: Metrics,
        *,
        offer_outcomes: bool,
        campaigns: Mapping[str, Campaign] | None = None,
    ) -> None:
        self.backend = backend
        self.campaigns = dict(campaigns or {})  # for purchase caps
        self.clock = clock
        self.settings = settings
        self.attribution = attribution
        self.journal = journal
        self.event_journal = event_journal
        self.player_features = player_features
        self.metrics = metrics
        self.offer_outcomes = offer_outcomes
        self._journal_events = settings.decision_log == "journal"
        self._log_first = bool(settings.log_url)  # the replicated log is the system of record
        self._earliest = parse_rfc3339(settings.earliest_event_ts)

    def ingest(self, events: Sequence[EventIn]) -> IngestResult:
        """Validate and store a batch (durable on return), then fold it into the online
        state. If the online store cannot take it now, the events stay stored and the state
        catches up from the log when the store is back (``online == "deferred"``)."""
        if self._log_first:
            return self._ingest_journaled(events, durable="log")
        found: dict[str, DecisionRecord] = {}  # the decisions the purchases name, looked up once
        s = self.settings
        try:
            stored = ingest(
                self.backend,
                events,
                self.clock,
                s.max_batch_events,
                s.max_future_seconds,
                earliest=self._earliest,
                classify=lambda purchases, now: self._classify(purchases, now, found),
                derive=(lambda records: self._bought(records, found))
                if self.offer_outcomes
                else None,
            )
        except BackendUnavailable:
            if not self._journal_events:
                raise
            return self._ingest_journaled(events)
        self._sold(stored.stored, found)
        online = "updated" if self.player_features.fold(stored.stored) else "deferred"
        self.metrics.events.labels("accepted").inc(stored.accepted)
        self.metrics.events.labels("duplicate").inc(stored.duplicates)
        verdicts = Counter(
            e.attribution or "unattributed" for e in stored.stored if e.type == "purchase"
        )
        for verdict, n in verdicts.items():  # one counter update per verdict, not per event
            self.metrics.purchases.labels(verdict).inc(n)
        self.player_features.follow_if_due()
        return replace(stored, online=online)

    def _ingest_journaled(
        self, events: Sequence[EventIn], durable: str = "journal"
    ) -> IngestResult:
        """``offerloop serve`` with the database unavailable: the batch is validated as
        always, journaled locally and fsynced before the answer (``backends._journal``),
        committed when the database is back, and folded into the online state from the log
        then (``features._follow``). Purchases naming a decision are ``pending``: their
        verdict is taken again when revenue is read. With the replicated log
        (``durable == "log"``) every batch goes this way, appended to the log (replicated)
        before the answer, its purchases classified against the database as usual."""
        now = self.clock.now()
        s = self.settings
        records = prepare(events, now, s.max_batch_events, s.max_future_seconds, self._earliest)
        found: dict[str, DecisionRecord] = {}
        classify = self._classify if durable == "log" else self._classify_offline
        records, verdicts = classified(
            records, now, lambda purchases, now: classify(purchases, now, found)
        )
        extra = self._bought(records, found) if self.offer_outcomes else []
        known = self.event_journal.find([r.event_id for r in records + extra])
        seen: set[str] = set()
        new = []
        for r in records + extra:
            if r.event_id not in known and r.event_id not in seen:
                seen.add(r.event_id)
                new.append(r)
        self.event_journal.append_many(new, sync=True)
        done = result(records, new, verdicts, online="deferred", durable=durable)
        self.metrics.events.labels("journaled" if durable == "journal" else "logged").inc(
            done.accepted
        )
        self.metrics.events.labels("duplicate").inc(done.duplicates)
        self.metrics.online_deferred.inc(len(new))
        return done

    def _sold(self, records: Sequence[EventRecord], found: Mapping[str, DecisionRecord]) -> None:
        """Count the attributed purchases against their campaigns' purchase caps (purchase
        limits, cooldowns after a purchase; ``campaigns.Cap``). The purchases are stored
        already: if the database cannot take the count now, it is counted as a fault and the
        caps miss it."""
        for r in records:
            d = found.get(r.decision_id or "") if r.attribution == ATTRIBUTED else None
            c = self.campaigns.get(d.campaign) if d is not None else None
            if d is None or c is None or not c.has_offer(d.offer_id):
                continue
            sold = [(k, w) for k, _, w in c.cap_checks(d.offer_id, "purchases")]
            if not sold:
                continue
            try:  # a purchase is recorded, never refused: limits apply to the next decision
                self.backend.take(r.player_id, r.ts, _always(sold), r.ts)
            except BackendUnavailable:
                self.metrics.backend_errors.labels("database", "caps").inc()

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

    def seen(self, record: DecisionRecord) -> None:
        """A decision's ``offer_outcome`` event (with offer-history features): journaled
        (committed with the next batch, never a database round trip on the request path) and
        folded into the online state now, so the player's next decision counts it. The
        follower folds the committed copy again later as a no-op (an entry is folded once per
        event id); if the fold fails, the follower folds it from the log."""
        if not self.offer_outcomes:
            return
        event = seen_event(record)
        self.event_journal.append(event)
        self.player_features.fold([event])

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
        the decisions from this process's journal, then the database. The decisions found
        are added to ``found``."""
        ids = list({e.decision_id for e in purchases if e.decision_id})
        found.update(self.journal.find(ids))
        found.update(self.backend.get_decisions([i for i in ids if i not in found]))
        earlier = self.backend.purchases_for(list(found)) if found else []
        return self.attribution.classify(purchases, found, earlier, now)

    def decision(self, decision_id: str) -> tuple[DecisionRecord, Reward]:
        """A logged decision (from this process's journal until it is committed, then the
        database) and its reward so far; NotFound for an unknown id. Never waits for shadow
        scoring."""
        record = self.journal.find([decision_id]).get(decision_id)
        if record is None:
            record = self.backend.get_decisions([decision_id]).get(decision_id)
        if record is None:
            raise NotFound(f"decision {decision_id!r} does not exist")
        reward = attribute(self.backend, [record], self.attribution, self.clock.now())
        return record, reward[decision_id]


def _always(
    entries: list[tuple[str, float]],
) -> Callable[[list[tuple[str, float]]], list[tuple[str, float]]]:
    """A ``CapLedger.take`` choice that records ``entries`` whatever was recorded before."""
    return lambda _shows: entries
