"""A typed Python client of the offerloop HTTP API for game backends (sync and async, on
httpx): decide with a deadline and a fallback offer, events in batches retried with the same
ids, errors with the service's words. It imports nothing of the service itself."""

from offerloop.client._client import (
    ApiError,
    AsyncOfferloopClient,
    Decision,
    IngestResult,
    OfferloopClient,
    Unavailable,
)

__all__ = [
    "ApiError",
    "AsyncOfferloopClient",
    "Decision",
    "IngestResult",
    "OfferloopClient",
    "Unavailable",
]
