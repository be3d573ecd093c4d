"""Player features, defined once and computed from the event log as of any moment.

The same function, :func:`player_features`, serves online (events up to now, read at decision
time) and offline (events up to a past decision's timestamp), so training and serving cannot
disagree. Each feature declares its type and the default used for a player with no data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from offerloop.backends import EventRecord

__all__ = [
    "FEATURES",
    "FeatureSpec",
    "FeatureValue",
    "encode",
    "encoded_names",
    "feature_names",
    "player_features",
]

FeatureValue = float | str
DAY = 86400.0


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str  # "number" | "category"
    default: FeatureValue
    help: str
    categories: tuple[str, ...] = ()  # one-hot levels for model encoding; others map to none
    scale: str = "identity"  # "identity" | "log1p" — how a model sees a number
    divisor: float = 1.0


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("level", "number", 1.0, "Latest level reached (level_up events).", divisor=50),
    FeatureSpec("is_payer", "number", 0.0, "1 if the player ever purchased, else 0."),
    FeatureSpec(
        "total_spend", "number", 0.0, "Lifetime purchase amount.", scale="log1p", divisor=5
    ),
    FeatureSpec("purchases", "number", 0.0, "Lifetime number of purchases.", scale="log1p"),
    FeatureSpec(
        "days_since_last_purchase",
        "number",
        365.0,
        "Days since the last purchase; 365 if none.",
        scale="log1p",
        divisor=6,
    ),
    FeatureSpec(
        "sessions_7d", "number", 0.0, "session_start events in the last 7 days.", divisor=14
    ),
    FeatureSpec(
        "days_since_install",
        "number",
        0.0,
        "Days since the first event (or player_profile install_ts).",
        scale="log1p",
        divisor=4,
    ),
    FeatureSpec(
        "platform", "category", "unknown", "Profile platform.", categories=("ios", "android")
    ),
    FeatureSpec(
        "country",
        "category",
        "unknown",
        "Profile country (ISO 3166 alpha-2, lower case).",
        categories=("us", "gb", "de", "jp", "br", "in", "mx", "fr"),
    ),
)

_BY_NAME = {f.name: f for f in FEATURES}


def feature_names() -> list[str]:
    return [f.name for f in FEATURES]


def player_features(events: Iterable[EventRecord], as_of: float) -> dict[str, FeatureValue]:
    """Fold a player's events (any order) into feature values as of ``as_of``.

    Events stamped after ``as_of`` are ignored, which makes the same call point-in-time
    correct for training and fresh for serving.
    """
    values: dict[str, FeatureValue] = {f.name: f.default for f in FEATURES}
    first_ts: float | None = None
    install_ts: float | None = None
    last_purchase: float | None = None
    level_ts = -math.inf
    profile_ts: dict[str, float] = {}
    spend = 0.0
    purchases = 0
    sessions = 0
    for e in events:
        if e.ts > as_of:
            continue
        first_ts = e.ts if first_ts is None else min(first_ts, e.ts)
        if e.type == "session_start":
            if e.ts > as_of - 7 * DAY:
                sessions += 1
        elif e.type == "level_up":
            lvl = e.properties.get("level")
            if isinstance(lvl, int | float) and not isinstance(lvl, bool) and e.ts >= level_ts:
                values["level"] = float(lvl)
                level_ts = e.ts
        elif e.type == "purchase":
            spend += e.amount
            purchases += 1
            last_purchase = e.ts if last_purchase is None else max(last_purchase, e.ts)
        elif e.type == "player_profile":
            for key in ("platform", "country"):
                v = e.properties.get(key)
                if isinstance(v, str) and e.ts >= profile_ts.get(key, -math.inf):
                    values[key] = v.lower()
                    profile_ts[key] = e.ts
            inst = e.properties.get("install_ts")
            if isinstance(inst, int | float) and not isinstance(inst, bool):
                install_ts = float(inst)
    values["total_spend"] = round(spend, 6)
    values["purchases"] = float(purchases)
    values["is_payer"] = 1.0 if purchases else 0.0
    values["sessions_7d"] = float(sessions)
    if last_purchase is not None:
        values["days_since_last_purchase"] = round(min(365.0, (as_of - last_purchase) / DAY), 6)
    start = install_ts if install_ts is not None else first_ts
    if start is not None:
        values["days_since_install"] = round(max(0.0, (as_of - start) / DAY), 6)
    return values


def encoded_names() -> list[str]:
    names: list[str] = []
    for f in FEATURES:
        if f.kind == "number":
            names.append(f.name)
        else:
            names.extend(f"{f.name}={c}" for c in f.categories)
    return names


def encode(features: Mapping[str, object]) -> list[float]:
    """The numeric vector a model sees; missing or mistyped values take the default."""
    out: list[float] = []
    for f in FEATURES:
        v = features.get(f.name, f.default)
        if f.kind == "number":
            x = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
            if not math.isfinite(x):
                x = float(f.default) if isinstance(f.default, float) else 0.0
            if f.scale == "log1p":
                x = math.log1p(max(x, 0.0))
            out.append(x / f.divisor)
        else:
            out.extend(1.0 if v == c else 0.0 for c in f.categories)
    return out
