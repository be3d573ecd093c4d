"""Offer outcomes: the events offerloop writes itself, so features can read a player's own
offer history (``features.offer_history``) like any other events.

* every decision becomes an ``offer_outcome`` event ``seen=1, ignored=1`` for the offer shown;
* every purchase attributed to a decision (``events._attribution``) becomes one with
  ``bought=1, ignored=-1``, at the purchase's time, stored in the same batch as the purchase.

So over any window, ``seen`` counts offers shown, ``bought`` those bought and ``ignored`` the
difference. A decision's event is stamped :data:`AFTER` seconds after the decision (and
received then): features as of the decision, online or offline, never count the decision
itself. Event ids are derived from the decision or purchase, so a retried batch or a second
write stores nothing twice. A client cannot send ``offer_outcome`` events (``events._schema``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from offerloop.backends import OFFER_OUTCOME, DecisionRecord, EventRecord
from offerloop.campaigns import offer_keys

__all__ = ["AFTER", "bought_event", "seen_event"]

AFTER = 0.001  # seconds between a decision and its "seen" event


def _props(d: DecisionRecord, seen: int, bought: int) -> Mapping[str, object]:
    return {
        **offer_keys(d.offer_id),
        "decision_id": d.decision_id,
        "seen": seen,
        "bought": bought,
        "ignored": seen - bought,
    }


def seen_event(d: DecisionRecord) -> EventRecord:
    ts = d.ts + AFTER
    return EventRecord(f"{d.decision_id}.seen", d.player_id, OFFER_OUTCOME, ts, _props(d, 1, 0), ts)


def bought_event(purchase: EventRecord, d: DecisionRecord) -> EventRecord:
    tag = hashlib.sha256(purchase.event_id.encode()).hexdigest()[:16]
    return EventRecord(
        f"{d.decision_id}.bought.{tag}",
        d.player_id,
        OFFER_OUTCOME,
        purchase.ts,
        _props(d, 0, 1),
        purchase.received_at,
    )
