"""How raw event property values enter aggregations — one rule shared by every engine.

A property value is a *number* if it is an int or float (not a bool) and finite, a *string*
if it is a str; anything else (bool, null, list, object) is ignored by aggregations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from offerloop.campaigns import Condition

__all__ = ["as_number", "as_string", "distinct_key", "matches"]


def as_number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def as_string(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def distinct_key(v: Any) -> tuple[float | None, str | None] | None:
    n, s = as_number(v), as_string(v)
    return None if n is None and s is None else (n, s)


def matches(props: Mapping[str, Any], where: Sequence[Condition]) -> bool:
    return all(c.holds(props) for c in where)
