"""One exception tree for offerloop, with messages meant for the person who called.

    OfferloopError                 base; ``str(exc)`` is a one-line user-facing message
    ├── InvalidInput               the caller sent something wrong (HTTP 422, CLI exit 2)
    │   ├── CampaignInvalid        a campaign file failed validation (every problem listed)
    │   └── DataRejected           a store refused a value: it can never be stored as it is
    ├── Unauthenticated            no credentials where they are required (HTTP 401)
    ├── Forbidden                  wrong credentials, or the operation is disabled (HTTP 403)
    ├── NotFound                   a named thing does not exist (HTTP 404)
    ├── Conflict                   valid request, but the current state forbids it (HTTP 409)
    ├── ArtifactCorrupt            a stored model artifact failed its sha256 check (HTTP 500)
    ├── BackendUnavailable         a store we depend on did not answer (HTTP 503)
    └── Overloaded                 too much work in flight: shed, retry later (HTTP 503)

Errors from libraries underneath (sqlite3, numpy, ...) are translated once, where they are
caught, with ``raise Mapped(msg) from exc``. The HTTP mapping lives in
``offerloop.serving._errors``; the CLI mapping in ``offerloop.cli``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ArtifactCorrupt",
    "BackendUnavailable",
    "CampaignInvalid",
    "Conflict",
    "DataRejected",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "OfferloopError",
    "Overloaded",
    "Problem",
    "Unauthenticated",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a dotted/indexed path) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class OfferloopError(Exception):
    """Base of every error offerloop raises on purpose."""

    headline = "offerloop error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(OfferloopError):
    """The caller's input is wrong; ``problems`` names each field and what is wrong with it."""

    headline = "invalid input"

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = list(problems) or [Problem("", message)]
        super().__init__(message)

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> InvalidInput:
        """One error for all of ``problems``; its message joins them with ``; ``."""
        return cls("; ".join(str(p) for p in problems), problems)


class CampaignInvalid(InvalidInput):
    """A campaign file could not be read or failed validation; ``problems`` lists every problem
    with its location."""

    headline = "invalid campaign"


class DataRejected(InvalidInput):
    """A store refused a value (a NUL character, a number out of its range): retrying
    cannot help. Validation at the edge should make this rare; the journal quarantines a
    decision that meets it rather than retry it for ever."""

    headline = "value refused by the store"


class Unauthenticated(OfferloopError):
    """No credentials where they are required (HTTP 401)."""

    headline = "unauthenticated"


class Forbidden(OfferloopError):
    """Wrong credentials, or the operation is disabled (HTTP 403)."""

    headline = "forbidden"


class NotFound(OfferloopError):
    """A named thing (a model version, a decision, a log, ...) does not exist (HTTP 404)."""

    headline = "not found"


class Conflict(OfferloopError):
    """A valid request, but the current state forbids it (HTTP 409)."""

    headline = "conflict"


class ArtifactCorrupt(OfferloopError):
    """A stored model artifact failed its sha256 check or is not a valid artifact (HTTP 500)."""

    headline = "corrupt model artifact"


class BackendUnavailable(OfferloopError):
    """A store offerloop depends on did not answer (HTTP 503); a later retry may succeed."""

    headline = "backend unavailable"


class Overloaded(OfferloopError):
    """The service is shedding load (too much work in flight, or requests waiting too
    long): nothing was done; retry after ``retry_after`` seconds."""

    headline = "overloaded"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
