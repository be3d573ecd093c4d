"""What a campaign is: bundles × messages = offers, plus the rules of the rule-based policy,
who may see each offer (eligibility conditions on bundles and messages) and when the campaign
runs (start and end)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bundle", "Campaign", "Cap", "Condition", "Message", "Offer", "Rule", "offer_keys"]

CAP_SCOPES = ("offer", "bundle", "message", "campaign")
CONTROLS = ("random", "default")  # what a campaign's control group is shown
CAP_COUNTS = ("shows", "purchases")  # what a cap counts

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Condition:
    """``feature op value``, e.g. ``level >= 10`` or ``platform == "ios"``."""

    feature: str
    op: str
    value: float | str

    def holds(self, features: Mapping[str, Any]) -> bool:
        """Whether the row's value of ``feature`` compares true; False when it is missing, a
        bool, or a string where the value is a number (or the reverse)."""
        actual = features.get(self.feature)
        if actual is None or isinstance(actual, bool):
            return False
        if isinstance(self.value, str) != isinstance(actual, str):
            return False
        return OPERATORS[self.op](actual, self.value)

    def __str__(self) -> str:
        value = f'"{self.value}"' if isinstance(self.value, str) else f"{self.value:g}"
        return f"{self.feature} {self.op} {value}"


@dataclass(frozen=True)
class Bundle:
    id: str
    products: Mapping[str, int]
    price: float
    # who may be offered it: every condition must hold for the request's feature row
    eligible: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Message:
    id: str
    text: str
    eligible: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Offer:
    id: str
    bundle: Bundle
    message: Message

    @property
    def price(self) -> float:
        """The bundle's price: what a purchase of this offer is worth."""
        return self.bundle.price

    def doc(self) -> dict[str, Any]:
        """The offer as ``GET /v1/campaigns/{id}`` and ``check-campaign --json`` show it."""
        return {
            "offer_id": self.id,
            "bundle_id": self.bundle.id,
            "message_id": self.message.id,
            "price": self.price,
            "products": dict(self.bundle.products),
            "message": self.message.text,
            "eligible": [str(c) for c in (*self.bundle.eligible, *self.message.eligible)],
        }


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` shows (``counts == "shows"``) or attributed purchases (``counts ==
    "purchases"``: purchase limits, and cooldowns after a purchase) per player of the same
    ``per`` (``offer``, ``bundle``, ``message``, or the whole ``campaign``) within ``within``
    seconds."""

    per: str
    limit: int
    within: float
    counts: str = "shows"

    def key(self, campaign: str, offer: Offer) -> str:
        """The ledger key one show (or purchase) of ``offer`` counts under for this cap."""
        kind = "" if self.counts == "shows" else "bought|"
        if self.per == "campaign":
            return f"{campaign}|{kind}campaign"
        part = {"offer": offer.id, "bundle": offer.bundle.id, "message": offer.message.id}
        return f"{campaign}|{kind}{self.per}|{part[self.per]}"

    def doc(self) -> dict[str, Any]:
        """The cap as ``GET /v1/campaigns`` and ``check-campaign --json`` show it."""
        return {
            "per": self.per,
            "max": self.limit,
            "within_seconds": self.within,
            "counts": self.counts,
        }


@dataclass(frozen=True)
class Rule:
    """Show ``offer`` when every condition holds; rules are tried in file order."""

    offer: str
    when: tuple[Condition, ...]

    def matches(self, features: Mapping[str, Any]) -> bool:
        """Whether every condition holds for the row (True for a rule without conditions)."""
        return all(c.holds(features) for c in self.when)


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    bundles: tuple[Bundle, ...]
    messages: tuple[Message, ...]
    rules: tuple[Rule, ...]
    default_offer: str
    start: float | None = None  # epoch seconds; offers are shown from here on (None: always)
    end: float | None = None  # and before here
    caps: tuple[Cap, ...] = ()  # frequency caps per player
    # a share of players (a stable hash) kept out of personalisation, to measure its lift:
    # shown uniform random offers ("random") or the default offer ("default")
    control_share: float = 0.0
    control: str = "random"
    offers: tuple[Offer, ...] = field(init=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _restricted: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offers = tuple(
            Offer(offer_id(b.id, m.id), b, m) for b in self.bundles for m in self.messages
        )
        object.__setattr__(self, "offers", offers)
        object.__setattr__(self, "_index", {o.id: i for i, o in enumerate(offers)})
        restricted = (
            self.start is not None
            or self.end is not None
            or bool(self.caps)
            or any(b.eligible for b in self.bundles)
            or any(m.eligible for m in self.messages)
        )
        object.__setattr__(self, "_restricted", restricted)

    @property
    def restricted(self) -> bool:
        """Whether some offer may be withheld (eligibility conditions, a schedule, caps)."""
        return self._restricted

    def running(self, now: float) -> bool:
        """Whether ``now`` is within the campaign's schedule."""
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)

    def eligible(
        self,
        features: Mapping[str, Any],
        now: float,
        shows: Sequence[tuple[str, float]] = (),
    ) -> list[str] | None:
        """The offers this feature row may be shown at ``now``, in campaign order; None when
        every offer may (the common case, decided without looking at the row). Outside the
        schedule no offer is eligible. An offer is eligible when its bundle's and its
        message's conditions all hold and no cap is reached by the player's ``shows``
        (``(key, ts)``, as :meth:`Cap.key` names them)."""
        if not self.restricted:
            return None
        if not self.running(now):
            return []
        bundles = {b.id for b in self.bundles if all(c.holds(features) for c in b.eligible)}
        messages = {m.id for m in self.messages if all(c.holds(features) for c in m.eligible)}
        out = [o for o in self.offers if o.bundle.id in bundles and o.message.id in messages]
        if self.caps and shows:
            out = [o for o in out if all(self._under(cap, o, shows, now) for cap in self.caps)]
        return [o.id for o in out]

    def _under(
        self, cap: Cap, offer: Offer, shows: Sequence[tuple[str, float]], now: float
    ) -> bool:
        key = cap.key(self.id, offer)
        return sum(1 for k, t in shows if k == key and t > now - cap.within) < cap.limit

    def cap_checks(self, offer: str, counts: str = "shows") -> list[tuple[str, int, float]]:
        """What showing (``counts == "shows"``) or selling (``"purchases"``) ``offer`` takes
        from the player's caps of that kind: ``(key, limit, window)``."""
        o = self.offers[self.index(offer)]
        return [
            (cap.key(self.id, o), cap.limit, cap.within)
            for cap in self.caps
            if cap.counts == counts
        ]

    @property
    def longest_cap(self) -> float:
        """The longest window of the caps (0 without caps)."""
        return max((c.within for c in self.caps), default=0.0)

    def shown_among(self, eligible: Sequence[str]) -> list[str]:
        """What may be shown given the eligible offers: those, or the campaign's default offer
        when there are none (the documented answer to a request no offer fits)."""
        return list(eligible) if eligible else [self.default_offer]

    @property
    def offer_ids(self) -> list[str]:
        """Every offer id (``bundle:message``), bundle by bundle: the order policies use."""
        return [o.id for o in self.offers]

    def index(self, offer: str) -> int:
        """The position of an offer in :attr:`offer_ids`; KeyError if it is not in the campaign."""
        return self._index[offer]

    def has_offer(self, offer: str) -> bool:
        """Whether the offer id is one of this campaign's."""
        return offer in self._index


def offer_id(bundle_id: str, message_id: str) -> str:
    return f"{bundle_id}:{message_id}"


def offer_keys(offer: str) -> dict[str, str]:
    """What an offer id ``bundle:message`` is made of: ``offer`` (the id), ``bundle`` and
    ``message``. Any other action is its own bundle, with message ``-``."""
    bundle, sep, message = offer.partition(":")
    return {"offer": offer, "bundle": bundle, "message": message if sep else "-"}
