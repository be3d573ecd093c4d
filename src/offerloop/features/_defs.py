"""Feature definitions: one declaration per feature, used by every engine.

Kinds (entity: player):

* :func:`profile` — the latest value of a ``player_profile`` attribute;
* :func:`aggregate` — count, sum, mean, min, max, last or distinct count of an event type's
  property over a window (``1h``, ``24h``, ``7d``, ``30d``, ``lifetime``, ...), with filters;
* :func:`since_last` — time since the latest matching event;
* :func:`offer_history` — the player's own offer history: offers seen, bought and ignored
  per bundle, message or offer over a window (from the ``offer_outcome`` events offerloop
  writes itself), which a model can also read as "this offer's own history";
* :func:`context` — a value passed with the decision request;
* :func:`sql` — a column of a query against a database the team already has;
* :func:`batch` — a column of a Parquet/CSV table of (player id, timestamp, columns).

**What "as of t" means.** A feature value as of time ``t`` reflects exactly the events that
were *known* at ``t``: those with ``ts <= t`` that had also been received by ``t``. Windows are
closed: an event counts in a window ``w`` at ``t`` when ``t - w <= ts <= t``. Online and
offline both follow this rule, which is why they agree even when events arrive late.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from offerloop._clock import DURATION_UNITS, parse_duration
from offerloop._errors import InvalidInput, Problem
from offerloop.backends import OFFER_OUTCOME
from offerloop.campaigns import Condition
from offerloop.campaigns._load import _COND

__all__ = [
    "AGGREGATIONS",
    "Aggregate",
    "Batch",
    "Context",
    "EventSchema",
    "Feature",
    "FeatureSet",
    "OfferHistory",
    "Profile",
    "SinceLast",
    "Sql",
    "aggregate",
    "batch",
    "context",
    "offer_history",
    "parse_duration",
    "profile",
    "since_last",
    "sql",
]

AGGREGATIONS = ("count", "sum", "mean", "min", "max", "last", "distinct_count")
TYPES = ("int", "float", "category")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

FeatureValue = float | int | str
_UNITS = DURATION_UNITS  # since_last's units


@dataclass(frozen=True)
class EventSchema:
    """The properties an event type carries: name → "float" | "int" | "category" | "any"."""

    type: str
    properties: Mapping[str, str] = field(default_factory=dict)
    open: bool = False  # any property name allowed (player_profile)


BUILTIN_EVENTS: tuple[EventSchema, ...] = (
    EventSchema("session_start"),
    EventSchema("level_up", {"level": "int"}),
    EventSchema("purchase", {"amount": "float", "decision_id": "category"}),
    EventSchema("player_profile", open=True),
    EventSchema(
        OFFER_OUTCOME,
        {
            "offer": "category",
            "bundle": "category",
            "message": "category",
            "decision_id": "category",
            "seen": "int",
            "bought": "int",
            "ignored": "int",
        },
    ),
)
OFFER_OUTCOMES = ("seen", "bought", "ignored")
OFFER_KEYS = ("bundle", "message", "offer")


@dataclass(frozen=True)
class Feature:
    """Base of every feature kind: a name, a type, a default and how a model sees it."""

    name: str
    type: str
    default: FeatureValue
    help: str = ""
    categories: tuple[str, ...] = ()  # one-hot levels for models (category features)
    transform: str = "identity"  # "identity" | "log1p" (non-negative numbers)
    scale: float = 1.0

    kind = "feature"

    def encode_into(self, value: object, out: list[float]) -> None:
        """Append the value as a model sees it to ``out``: one 0/1 column per category, or one
        number (0 unless a finite number; log1p if so transformed; divided by ``scale``)."""
        if self.type == "category":
            out.extend(1.0 if value == c else 0.0 for c in self.categories)
            return
        x = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        if not math.isfinite(x):
            x = 0.0
        if self.transform == "log1p":
            x = math.log1p(max(x, 0.0))
        out.append(x / self.scale)

    def encoded_names(self) -> list[str]:
        """Names of the columns :meth:`encode_into` appends: ``name=<category>`` or ``name``."""
        if self.type == "category":
            return [f"{self.name}={c}" for c in self.categories]
        return [self.name]

    def coerce(self, value: object) -> FeatureValue:
        """The value in this feature's type, or the default if it does not fit."""
        if value is None:
            return self.default
        if self.type == "category":
            return value if isinstance(value, str) else self.default
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self.default
        if self.type == "int":
            return int(value) if float(value).is_integer() else self.default
        return float(value) if math.isfinite(value) else self.default


@dataclass(frozen=True)
class Profile(Feature):
    attribute: str = ""
    kind = "profile"


@dataclass(frozen=True)
class Aggregate(Feature):
    event: str = ""
    agg: str = "count"
    property: str | None = None
    window: str = "lifetime"
    where: tuple[Condition, ...] = ()
    kind = "aggregate"

    @builtins.property
    def seconds(self) -> float:
        """The window in seconds (inf for ``lifetime``)."""
        return parse_duration(self.window)

    @builtins.property
    def stream(self) -> tuple[str, tuple[Condition, ...]]:
        """The events it reads: (event type, filter conditions)."""
        return (self.event, self.where)


@dataclass(frozen=True)
class OfferHistory(Aggregate):
    """How often the player was shown (``seen``), bought (``bought``) or did not buy
    (``ignored``: seen minus bought in the window) offers whose ``by`` (bundle, message or
    offer) is ``key``. An :class:`Aggregate` (a sum over ``offer_outcome`` events) to every
    engine; models also see it per offer, as the history of the offer being scored
    (:meth:`offerloop.features.Encoder.offer_columns`)."""

    by: str = "bundle"
    key: str = ""
    outcome: str = "seen"
    kind = "offer_history"

    @builtins.property
    def group(self) -> str:
        """The features that differ only in ``key``: one "own history" column per offer."""
        return f"{self.by}_{self.outcome}_{self.window}"


@dataclass(frozen=True)
class SinceLast(Feature):
    event: str = ""
    unit: str = "h"
    where: tuple[Condition, ...] = ()
    kind = "since_last"

    @property
    def stream(self) -> tuple[str, tuple[Condition, ...]]:
        """The events it reads: (event type, filter conditions)."""
        return (self.event, self.where)


@dataclass(frozen=True)
class Context(Feature):
    key: str = ""
    kind = "context"


@dataclass(frozen=True)
class Sql(Feature):
    url: str = ""
    query: str = ""  # one "?" or ":player_id" parameter: the player id
    column: str = ""
    cache_seconds: float = 60.0
    timeout_ms: float = 5.0
    kind = "sql"


@dataclass(frozen=True)
class Batch(Feature):
    path: str = ""  # a file, or a glob of files that land over time
    column: str = ""
    player_column: str = "player_id"
    ts_column: str = "ts"
    kind = "batch"


StreamKey = tuple[str, tuple[Condition, ...]]


def stream_of(f: Feature) -> StreamKey | None:
    """The event stream (type and filter) a feature reads, or None (context, sql, batch)."""
    if isinstance(f, Aggregate | SinceLast):
        return (f.event, f.where)
    if isinstance(f, Profile):
        return ("player_profile", ())
    return None


def property_of(f: Feature) -> str | None:
    """The event property a feature reads from its stream, if any."""
    if isinstance(f, Aggregate):
        return f.property
    if isinstance(f, Profile):
        return f.attribute
    return None


def properties_read(f: Feature) -> list[str]:
    """Every event property a feature reads: its value's, then its conditions'."""
    key = stream_of(f)
    if key is None:
        return []
    p = property_of(f)
    return ([p] if p else []) + [c.feature for c in key[1]]


def _default_for(type_: str, default: FeatureValue | None) -> FeatureValue:
    if default is not None:
        return default
    return "unknown" if type_ == "category" else (0 if type_ == "int" else 0.0)


def _fits(type_: str, value: object) -> bool:
    if isinstance(value, bool):
        return False
    if type_ == "category":
        return isinstance(value, str)
    if type_ == "int":
        return isinstance(value, int)
    return isinstance(value, int | float) and math.isfinite(value)


def _conditions(where: str | Sequence[str]) -> tuple[Condition, ...]:
    items = [where] if isinstance(where, str) else list(where)
    out = []
    for text in items:
        m = _COND.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a filter like 'amount >= 10' or 'network == \"x\"'")
        name, op, raw = m.groups()
        value: float | str
        value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'" else float(raw)
        out.append(Condition(name, op, value))
    return tuple(out)


def _auto_transform(kind: str, agg: str | None, type_: str) -> str:
    if type_ == "category":
        return "identity"
    if kind == "since_last" or agg in ("count", "sum", "mean", "distinct_count", "max", "min"):
        return "log1p"
    return "identity"


def profile(
    name: str,
    attribute: str | None = None,
    *,
    type: str = "category",
    default: FeatureValue | None = None,
    categories: Sequence[str] = (),
    help: str = "",
    scale: float = 1.0,
) -> Profile:
    """The latest (by event time) value of a ``player_profile`` attribute."""
    return Profile(
        name,
        type,
        _default_for(type, default),
        help,
        tuple(categories),
        "identity",
        scale,
        attribute or name,
    )


def aggregate(
    name: str,
    event: str,
    agg: str,
    window: str = "lifetime",
    *,
    property: str | None = None,
    where: str | Sequence[str] = (),
    type: str | None = None,
    default: FeatureValue | None = None,
    help: str = "",
    transform: str | None = None,
    scale: float = 1.0,
    categories: Sequence[str] = (),
) -> Aggregate:
    """An aggregation of ``event``'s ``property`` over ``window`` (events matching ``where``)."""
    if type is None:
        type = "int" if agg in ("count", "distinct_count") else "float"
    default = _default_for(type, default)
    return Aggregate(
        name,
        type,
        _default_for(type, default),
        help,
        tuple(categories),
        transform or _auto_transform("aggregate", agg, type),
        scale,
        event,
        agg,
        property,
        window,
        _conditions(where),
    )


def offer_history(
    keys: Sequence[str],
    *,
    by: str = "bundle",
    window: str = "30d",
    outcomes: Sequence[str] = OFFER_OUTCOMES,
    scale: float = 1.0,
) -> list[OfferHistory]:
    """The player's offer history by ``by`` (``bundle``, ``message`` or ``offer``): one feature
    per key and outcome, named ``{by}_{key}_{outcome}_{window}`` (``bundle_starter_seen_30d``).

    offerloop writes the events these read: an ``offer_outcome`` event for every decision
    (``seen=1, ignored=1``, just after the decision, so a decision never counts itself) and
    one for every purchase attributed to a decision (``bought=1, ignored=-1``, at the
    purchase's time). A key not listed here is not counted; an offer id's key for
    ``offer`` is the offer id with ``:`` as ``__`` (names are lower_snake_case).
    """
    problem = _offer_problem(by, outcomes)
    if problem:
        raise ValueError(problem)
    out = []
    for key in keys:
        part = key.replace(":", "__")
        for outcome in outcomes:
            out.append(
                OfferHistory(
                    f"{by}_{part}_{outcome}_{window}",
                    "int",
                    0,
                    f"Offers with {by} {key} {outcome} in the last {window}.",
                    (),
                    "log1p",
                    scale,
                    OFFER_OUTCOME,
                    "sum",
                    outcome,
                    window,
                    (Condition(by, "==", key),),
                    by,
                    key,
                    outcome,
                )
            )
    return out


def _offer_problem(by: str, outcomes: Sequence[str]) -> str:
    """What is wrong with an offer history's ``by`` and outcomes ("" if nothing)."""
    if by not in OFFER_KEYS:
        return f"by must be one of {', '.join(OFFER_KEYS)}, not {by!r}"
    bad = [o for o in outcomes if o not in OFFER_OUTCOMES]
    if bad:
        return f"outcomes must be among {', '.join(OFFER_OUTCOMES)}, not {bad}"
    return ""


def since_last(
    name: str,
    event: str,
    *,
    unit: str = "h",
    where: str | Sequence[str] = (),
    default: float = 8760.0,
    help: str = "",
    scale: float = 1.0,
) -> SinceLast:
    """Time since the latest matching event, in ``unit`` (s, m, h, d); ``default`` if none."""
    return SinceLast(
        name, "float", float(default), help, (), "log1p", scale, event, unit, _conditions(where)
    )


def context(
    name: str,
    key: str | None = None,
    *,
    type: str = "float",
    default: FeatureValue | None = None,
    categories: Sequence[str] = (),
    help: str = "",
    scale: float = 1.0,
) -> Context:
    """A value sent with ``POST /v1/decide`` in ``context[key]``."""
    return Context(
        name,
        type,
        _default_for(type, default),
        help,
        tuple(categories),
        "identity",
        scale,
        key or name,
    )


def sql(
    name: str,
    url: str,
    query: str,
    column: str | None = None,
    *,
    type: str = "float",
    default: FeatureValue | None = None,
    cache_seconds: float = 60.0,
    timeout_ms: float = 5.0,
    categories: Sequence[str] = (),
    help: str = "",
    scale: float = 1.0,
) -> Sql:
    """A column of ``query`` (parameter: the player id) against ``url`` (sqlite:///path or
    postgresql://...). Not point-in-time: training uses the values logged at decision time."""
    return Sql(
        name,
        type,
        _default_for(type, default),
        help,
        tuple(categories),
        "identity",
        scale,
        url,
        query,
        column or name,
        cache_seconds,
        timeout_ms,
    )


def batch(
    name: str,
    path: str,
    column: str | None = None,
    *,
    player_column: str = "player_id",
    ts_column: str = "ts",
    type: str = "float",
    default: FeatureValue | None = None,
    categories: Sequence[str] = (),
    help: str = "",
    scale: float = 1.0,
) -> Batch:
    """A column of Parquet/CSV files of (player id, timestamp, columns), point-in-time."""
    return Batch(
        name,
        type,
        _default_for(type, default),
        help,
        tuple(categories),
        "identity",
        scale,
        path,
        column or name,
        player_column,
        ts_column,
    )


class FeatureSet:
    """A validated, ordered collection of features plus the event schemas they read."""

    def __init__(
        self,
        features: Iterable[Feature],
        events: Iterable[EventSchema] = (),
        source: str = "features",
    ) -> None:
        self.features: tuple[Feature, ...] = tuple(features)
        schemas = {e.type: e for e in BUILTIN_EVENTS}
        schemas.update({e.type: e for e in events})
        self.events: dict[str, EventSchema] = schemas
        self.source = source
        problems = self._validate()
        if problems:
            raise InvalidInput.of(problems)
        self.by_name = {f.name: f for f in self.features}
        self.defaults: dict[str, FeatureValue] = {f.name: f.default for f in self.features}

    def __iter__(self) -> Any:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def names(self) -> list[str]:
        """The feature names, in definition order."""
        return [f.name for f in self.features]

    def of_kind(self, *kinds: type[Feature]) -> list[Any]:
        """The features that are instances of any of ``kinds``, in definition order."""
        return [f for f in self.features if isinstance(f, kinds)]

    def encoded_names(self) -> list[str]:
        """The encoded column names of every feature, in order."""
        return [n for f in self.features for n in f.encoded_names()]

    def digest(self) -> str:
        """sha256 of the definitions (what lineage records as "the features")."""
        import hashlib

        text = repr([(type(f).__name__, sorted(vars(f).items())) for f in self.features])
        return hashlib.sha256(text.encode()).hexdigest()

    def encode(self, row: Mapping[str, object]) -> list[float]:
        """A row as a model sees it: every feature encoded in order (missing: its default)."""
        out: list[float] = []
        for f in self.features:
            f.encode_into(row.get(f.name, f.default), out)
        return out

    # -- validation ----------------------------------------------------------------------
    def _validate(self) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[str] = set()
        for i, f in enumerate(self.features):
            loc = f"{self.source}: {getattr(f, 'name', '?')}"

            def bad(msg: str, loc: str = loc) -> None:
                problems.append(Problem(loc, msg))

            if not isinstance(f, Feature):
                problems.append(Problem(f"{self.source}[{i}]", "is not a feature definition"))
                continue
            if not _NAME.match(f.name):
                bad("name must be lower_snake_case (letters, digits, _; at most 64)")
            if f.name in seen:
                bad("is defined twice")
            seen.add(f.name)
            if f.type not in TYPES:
                bad(f"type must be one of {', '.join(TYPES)}, not {f.type!r}")
                continue
            if not _fits(f.type, f.default):
                bad(f"default {f.default!r} is not of type {f.type}")
            if f.type != "category" and f.categories:
                bad("categories apply to category features only")
            if f.transform not in ("identity", "log1p"):
                bad("transform must be identity or log1p")
            if not (isinstance(f.scale, int | float) and f.scale > 0):
                bad("scale must be > 0")
            if isinstance(f, Aggregate | SinceLast):
                self._check_stream(f, bad)
            if isinstance(f, Aggregate):
                self._check_aggregate(f, bad)
            if isinstance(f, OfferHistory):
                self._check_offer_history(f, bad)
            if isinstance(f, SinceLast) and f.unit not in _UNITS:
                bad(f"unit must be one of {', '.join(_UNITS)}")
            if isinstance(f, Profile) and not f.attribute:
                bad("attribute is required")
            if isinstance(f, Sql) and not (f.url.startswith(("sqlite:", "postgresql:"))):
                bad("url must start with sqlite:/// or postgresql://")
            if isinstance(f, Sql) and not f.query.strip():
                bad("query is required")
            if isinstance(f, Batch) and not f.path:
                bad("path is required")
        return problems

    def _check_stream(self, f: Aggregate | SinceLast, bad: Any) -> None:
        schema = self.events.get(f.event)
        if schema is None:
            bad(
                f"unknown event type {f.event!r} (known: {', '.join(sorted(self.events))}; "
                "declare others with EventSchema)"
            )
            return
        for c in f.where:
            if not schema.open and c.feature not in schema.properties:
                bad(f"filter on unknown property {c.feature!r} of {f.event}")

    def _check_offer_history(self, f: OfferHistory, bad: Any) -> None:
        problem = _offer_problem(f.by, [f.outcome])
        if problem:
            bad(problem)
        expected = (OFFER_OUTCOME, "sum", f.outcome, (Condition(f.by, "==", f.key),))
        if (f.event, f.agg, f.property, f.where) != expected:
            bad("an offer history sums its outcome over offer_outcome events of its key")

    def _check_aggregate(self, f: Aggregate, bad: Any) -> None:
        if f.agg not in AGGREGATIONS:
            bad(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {f.agg!r}")
            return
        try:
            parse_duration(f.window)
        except ValueError as exc:
            bad(f"bad window: {exc}")
        schema = self.events.get(f.event)
        if f.agg == "count":
            if f.property is not None:
                bad("count takes no property (filter with where=)")
            if f.type != "int":
                bad("count is an int feature")
            return
        if f.property is None:
            bad(f"{f.agg} needs a property")
            return
        if schema is None:
            return
        ptype = schema.properties.get(f.property, "any" if schema.open else None)
        if ptype is None:
            bad(f"unknown property {f.property!r} of {f.event}")
            return
        if f.agg == "distinct_count":
            if f.type != "int":
                bad("distinct_count is an int feature")
        elif f.agg == "last":
            if ptype != "any" and (ptype == "category") != (f.type == "category"):
                bad(f"type {f.type} does not match property {f.property} ({ptype})")
        else:  # sum, mean, min, max: numbers only
            if ptype == "category":
                bad(f"{f.agg} needs a numeric property; {f.property} is a category")
            if f.type == "category":
                bad(f"{f.agg} gives a number, not a category")
            if f.type == "int" and f.agg == "mean":
                bad("mean is a float feature")
