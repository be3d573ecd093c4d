"""What a client may send, written once: safe text, sane numbers, bounded sizes.

Every text and number that reaches a store or a model passes these checks at the edge (the
HTTP API and the library's ``ingest``/``decide`` alike), so that no input can make a store
refuse a row after it was acknowledged, make a response unencodable, or grow a record
without bound. Each check returns the problem as one short sentence (or ``None``), which the
caller places at its location (``events[3].properties.level``).

* **Identifiers** (event, player, decision and campaign ids): 1–128 characters, no control
  characters (NUL, newlines, ...), no lone surrogates, no leading or trailing whitespace.
* **Keys** of properties and context: 1–64 characters, no control characters or surrogates.
* **Text values**: at most ``MAX_TEXT`` characters, no NUL and no lone surrogates (neither can
  be stored in PostgreSQL text or encoded as UTF-8).
* **Numbers**: integers within ±2^53 (exact in JSON and in a double), floats finite.
* **Structure**: property values nest at most ``MAX_DEPTH`` levels, with at most
  ``MAX_ITEMS`` entries per list or object; an event's properties at most ``MAX_PROPERTIES``
  keys and ``MAX_EVENT_BYTES`` of JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = [
    "MAX_DEPTH",
    "MAX_EVENT_BYTES",
    "MAX_ID",
    "MAX_INT",
    "MAX_ITEMS",
    "MAX_KEY",
    "MAX_PROPERTIES",
    "MAX_TEXT",
    "SafeId",
    "SafeKey",
    "SafeScalar",
    "check_id",
    "check_key",
    "check_number",
    "check_properties",
    "check_text",
    "check_value",
    "strict_json_loads",
]

MAX_ID = 128
MAX_KEY = 64
MAX_TEXT = 1024
MAX_INT = 2**53
MAX_DEPTH = 4
MAX_ITEMS = 256
MAX_PROPERTIES = 64
MAX_EVENT_BYTES = 16 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def check_id(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID:
        return f"must be at most {MAX_ID} characters"
    if _CONTROL.search(value):
        return "must not contain control characters or unpaired surrogates"
    if value != value.strip():
        return "must not start or end with whitespace"
    return None


def check_key(value: str) -> str | None:
    if not value:
        return "keys must not be empty"
    if len(value) > MAX_KEY:
        return f"keys must be at most {MAX_KEY} characters"
    if _CONTROL.search(value):
        return "keys must not contain control characters or unpaired surrogates"
    return None


def check_text(value: str) -> str | None:
    if len(value) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    if _BAD_TEXT.search(value):
        return "must not contain NUL characters or unpaired surrogates"
    return None


def check_number(value: float) -> str | None:
    """An int within ±2^53 or a finite float (bools are not numbers here)."""
    if isinstance(value, int):
        return None if -MAX_INT <= value <= MAX_INT else f"must be within ±{MAX_INT}"
    if not math.isfinite(value):
        return "must be a finite number"
    return None


def check_scalar(value: Any) -> str | None:
    """A context value: text, a number or a boolean, within the limits above."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return check_number(value)
    if isinstance(value, str):
        return check_text(value)
    return "must be a string, a number or a boolean"


def check_value(value: Any, depth: int = 0) -> list[tuple[str, str]]:
    """Problems of one JSON value as (relative location, message); nested locations are
    ``.key`` and ``[i]``."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        p = check_number(value)
        return [("", p)] if p else []
    if isinstance(value, str):
        p = check_text(value)
        return [("", p)] if p else []
    if isinstance(value, list | dict):
        if depth >= MAX_DEPTH:
            return [("", f"nests more than {MAX_DEPTH} levels deep")]
        if len(value) > MAX_ITEMS:
            return [("", f"has more than {MAX_ITEMS} entries")]
        out: list[tuple[str, str]] = []
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            where = f"[{k}]" if isinstance(k, int) else f".{k}"
            if isinstance(k, str) and (p := check_key(k)):
                out.append((where, p))
                continue
            out.extend((where + loc, msg) for loc, msg in check_value(v, depth + 1))
        return out
    return [("", f"is not a JSON value ({type(value).__name__})")]


def check_properties(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of an event's properties (relative locations, as :func:`check_value`)."""
    if len(props) > MAX_PROPERTIES:
        return [("", f"has more than {MAX_PROPERTIES} properties")]
    out = check_value(dict(props))
    if not out:
        size = len(json.dumps(props, separators=(",", ":")))
        if size > MAX_EVENT_BYTES:
            out.append(("", f"is {size} bytes of JSON; at most {MAX_EVENT_BYTES}"))
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def strict_json_loads(data: bytes | str) -> Any:
    """``json.loads`` that rejects what is not JSON (``NaN``, ``Infinity``) and turns
    nesting too deep for the parser into a ``ValueError``, like every other parse error."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _validator(check: Any) -> Any:
    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


# pydantic types for request models: the same checks, reported at the field's location
SafeId = Annotated[StrictStr, _validator(check_id)]
SafeKey = Annotated[StrictStr, _validator(check_key)]


def _scalar(value: Any) -> Any:
    problem = check_scalar(value)
    if problem:
        raise ValueError(problem)
    return value


SafeScalar = Annotated[StrictStr | StrictInt | StrictFloat | StrictBool, BeforeValidator(_scalar)]
