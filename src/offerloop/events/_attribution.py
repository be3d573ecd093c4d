"""Which purchases count for a decision: one rule, applied when a purchase arrives and again
whenever revenue is read.

Revenue per version decides releases and rollbacks, so a purchase naming a ``decision_id``
counts for that decision only if every check holds:

* the decision exists (``unknown_decision``; ``pending`` while a decision that may still be
  on its way to the database is not found: a process's journal commits every 20 ms);
* the purchase is by the same player (``other_player``);
* it happened at or after the decision (``before_decision``) and within the attribution
  window (``outside_window``);
* its amount is the price the offer was shown at, within ``price_tolerance`` (relative, or
  one cent) (``price_mismatch``): a purchase of something else naming the decision is not
  its revenue. Both numbers stay recorded: the event keeps its amount, the decision its
  price;
* with a signing secret set, it carries the decision's token (``bad_token``): an HMAC of the
  decision id and player that only the service can compute, for clients that cannot be
  trusted to name only their own decisions;
* no more than ``max_purchases`` purchases per decision (``repeat``), the first by time.

Every purchase is stored whatever the verdict (it is the client's data, and organic revenue
for features); the verdict is stored with it, counted in a metric, and returned per event by
``POST /v1/events``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from offerloop.backends import DecisionRecord, EventRecord

__all__ = [
    "ATTRIBUTED",
    "COUNTABLE",
    "PENDING",
    "AttributionRules",
    "decision_token",
]

ATTRIBUTED = "attributed"
PENDING = "pending"
COUNTABLE = (ATTRIBUTED, PENDING, "")  # "": stored before verdicts existed; checked on read
PENDING_SECONDS = 60.0  # a decision id younger than this may still be in a journal


def decision_token(secret: str, decision_id: str, player_id: str) -> str:
    """The token a decide answer carries when ``decision_token_secret`` is set."""
    mac = hmac.new(secret.encode(), f"{decision_id}\x00{player_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def _issued_at(decision_id: str) -> float | None:
    """When a decision id was issued (ids are ``d`` + 13 hex digits of milliseconds + 16
    random hex digits), or None if it is not one of ours."""
    if len(decision_id) != 30 or decision_id[0] != "d":
        return None
    try:
        return int(decision_id[1:14], 16) / 1000.0
    except ValueError:
        return None


def _logged_price(d: DecisionRecord) -> float | None:
    """The price a decision recorded for its offer (None: recorded before prices were)."""
    return d.price or None


@dataclass(frozen=True)
class AttributionRules:
    window_seconds: float
    price_tolerance: float = 0.01  # relative; negative: any amount counts
    max_purchases: int = 1
    secret: str = ""  # decision_token_secret: purchases must carry the token
    price_of: Callable[[DecisionRecord], float | None] = _logged_price

    def verdict(self, e: EventRecord, d: DecisionRecord | None, now: float) -> str:
        """The verdict for purchase ``e`` naming decision ``d`` (None: not found)."""
        if d is None:
            issued = _issued_at(e.decision_id or "")
            fresh = issued is not None and -5.0 <= now - issued <= PENDING_SECONDS
            return PENDING if fresh else "unknown_decision"
        if e.player_id != d.player_id:
            return "other_player"
        if e.ts < d.ts:
            return "before_decision"
        if e.ts > d.ts + self.window_seconds:
            return "outside_window"
        price = self.price_of(d)
        tolerance = max(0.01, self.price_tolerance * (price or 0.0))
        if price is not None and self.price_tolerance >= 0 and abs(e.amount - price) > tolerance:
            return "price_mismatch"
        if self.secret:
            token = e.properties.get("decision_token")
            expected = decision_token(self.secret, d.decision_id, d.player_id)
            if not isinstance(token, str) or not hmac.compare_digest(token, expected):
                return "bad_token"
        return ATTRIBUTED

    def classify(
        self,
        purchases: Sequence[EventRecord],
        decisions: Mapping[str, DecisionRecord],
        earlier: Sequence[EventRecord],
        now: float,
    ) -> dict[str, str]:
        """Verdicts of new purchases (by event id), given their decisions and the purchases
        already stored for those decisions (for the per-decision limit)."""
        counted: dict[str, int] = {}
        for e in earlier:
            d = decisions.get(e.decision_id or "")
            if d is not None and self.counts(e, d, now):
                counted[d.decision_id] = counted.get(d.decision_id, 0) + 1
        out: dict[str, str] = {}
        for e in sorted(purchases, key=lambda x: (x.ts, x.event_id)):
            did = e.decision_id or ""
            v = self.verdict(e, decisions.get(did), now)
            if v == ATTRIBUTED:
                if counted.get(did, 0) >= self.max_purchases:
                    v = "repeat"
                else:
                    counted[did] = counted.get(did, 0) + 1
            out[e.event_id] = v
        return out

    def counts(self, e: EventRecord, d: DecisionRecord, now: float) -> bool:
        """Whether a stored purchase counts for ``d`` as of ``now`` (before the limit)."""
        return e.attribution in COUNTABLE and e.ts <= now and self.verdict(e, d, now) == ATTRIBUTED
