"""A typed client of the offerloop HTTP API for game backends, sync and async (httpx).

What it does for a caller, so that a game server can call it on its request path:

* **Decide with a deadline and a fallback.** ``decide`` waits at most ``decide_timeout``
  (default 0.25 s). When the service cannot answer in time (down, unreachable, shedding load),
  it returns the ``fallback_offer`` given at construction, marked ``fallback=True`` and
  without a decision id (nothing was logged, so nothing must be attributed), or raises
  :class:`Unavailable` when there is none. A decide request is retried only when it cannot
  have been logged: the connection was refused or the service shed it (503 before any work);
  never after a read timeout, which could log a decision twice.
* **Events in batches, retried with the same ids.** ``send_events`` gives every event without
  an ``event_id`` a fresh one *before* the first attempt, cuts the list into batches of at
  most ``batch_size`` (the service's limit is 1,000), and retries each batch on connection
  errors, timeouts and 502/503/504 with exponential backoff (honouring ``Retry-After``): the
  service is idempotent on event ids, so a retry after a lost answer counts nothing twice.
* **Errors as exceptions with the service's words.** A 4xx answer raises :class:`ApiError`
  carrying the status, the error type, the message and each problem with its location; it is
  never retried (the same request would fail the same way).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "ApiError",
    "AsyncOfferloopClient",
    "Decision",
    "IngestResult",
    "OfferloopClient",
    "Unavailable",
]

_RETRY_STATUS = frozenset({502, 503, 504})


class Unavailable(Exception):
    """The service could not answer (after the retries the call allows)."""


class ApiError(Exception):
    """The service refused the request (4xx): ``status``, the error ``type``, its
    ``message`` and ``problems`` (each a location and a message)."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        err = body.get("error", {}) if isinstance(body, Mapping) else {}
        self.status = status
        self.type = str(err.get("type", "error"))
        self.message = str(err.get("message", body))
        self.problems: list[dict[str, str]] = list(err.get("problems", []))
        super().__init__(f"{status} {self.type}: {self.message}")


@dataclass(frozen=True)
class Decision:
    """The offer to show a player. ``fallback``: the service could not answer and this is the
    configured fallback offer (no decision was logged: ``decision_id`` is None)."""

    offer_id: str
    decision_id: str | None = None
    campaign: str | None = None
    bundle_id: str | None = None
    message_id: str | None = None
    price: float | None = None
    message: str | None = None
    model_version: str | None = None
    propensity: float | None = None
    mode: str | None = None
    decision_token: str | None = None
    fallback: bool = False

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Decision:
        """The decision of a ``POST /v1/decide`` answer."""
        return cls(
            offer_id=str(body["offer_id"]),
            decision_id=body.get("decision_id"),
            campaign=body.get("campaign"),
            bundle_id=body.get("bundle_id"),
            message_id=body.get("message_id"),
            price=body.get("price"),
            message=body.get("message"),
            model_version=body.get("model_version"),
            propensity=body.get("propensity"),
            mode=body.get("mode"),
            decision_token=body.get("decision_token"),
        )

    def purchase(
        self, event_id: str | None = None, *, amount: float | None = None, ts: str | None = None
    ) -> dict[str, Any]:
        """A ``purchase`` event crediting this decision (at the price shown unless
        ``amount``), with its decision token when the service signs decisions. A fallback
        decision was never logged: refused with ValueError."""
        if self.decision_id is None:
            raise ValueError("a fallback decision was not logged: report a plain purchase")
        props: dict[str, Any] = {"amount": self.price if amount is None else amount}
        props["decision_id"] = self.decision_id
        if self.decision_token:
            props["decision_token"] = self.decision_token
        return {
            "event_id": event_id or f"purchase-{uuid.uuid4().hex}",
            "type": "purchase",
            "ts": ts or _now(),
            "properties": props,
        }


@dataclass
class IngestResult:
    """What the service did with the events sent: sums over the batches."""

    accepted: int = 0
    duplicates: int = 0
    batches: int = 0
    attribution: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    """Now, RFC 3339 in UTC to the millisecond (a purchase right after its decision must not
    look earlier than it)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_ids(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The events, each with an ``event_id`` (a fresh one where missing), fixed before the
    first attempt so that every retry sends the same ids."""
    out = []
    for e in events:
        d = dict(e)
        if not d.get("event_id"):
            d["event_id"] = f"ev-{uuid.uuid4().hex}"
        out.append(d)
    return out


def _decide_body(
    player_id: str, campaign: str | None, context: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"player_id": player_id}
    if campaign is not None:
        body["campaign"] = campaign
    if context:
        body["context"] = dict(context)
    return body


def _error(r: httpx.Response) -> ApiError:
    try:
        body = r.json()
    except ValueError:
        body = {"error": {"type": "http_error", "message": r.text[:200]}}
    return ApiError(r.status_code, body)


def _wait(r: httpx.Response | None, attempt: int, backoff: float) -> float:
    """Seconds before the next attempt: the service's Retry-After (capped at 5 s) or
    exponential backoff."""
    if r is not None:
        try:
            return min(5.0, float(r.headers.get("retry-after", "")))
        except ValueError:
            pass
    return float(backoff * 2**attempt)


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        decide_timeout: float,
        retries: int,
        backoff: float,
        batch_size: int,
        fallback_offer: str | None,
        admin_token: str | None,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be between 1 and 1000 (the service's limit)")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.decide_timeout = decide_timeout
        self.retries = retries
        self.backoff = backoff
        self.batch_size = batch_size
        self.fallback_offer = fallback_offer
        self.headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}

    def _decide_outcome(
        self, attempt: int, r: httpx.Response | None, exc: Exception | None
    ) -> Decision | float:
        """What one decide attempt's outcome means: the decision (or the fallback offer), or
        the seconds to wait before trying again. Retried only when the request cannot have
        been logged: the connection was refused, or the service shed it (503)."""
        last = attempt >= self.retries
        if isinstance(exc, httpx.ConnectError):
            return self._fallback(exc) if last else _wait(None, attempt, self.backoff)
        if exc is not None:  # may have been logged: no retry
            return self._fallback(exc)
        assert r is not None
        if r.status_code == 503 and not last:
            return _wait(r, attempt, self.backoff)
        if r.status_code >= 500:
            return self._fallback(f"HTTP {r.status_code}")
        if r.status_code >= 400:
            raise _error(r)
        return Decision.of(r.json())

    def _call_outcome(
        self, what: str, attempt: int, r: httpx.Response | None, exc: Exception | None
    ) -> dict[str, Any] | float:
        """What one attempt of an idempotent call means: the answer, or the seconds to wait
        before trying again; ApiError for a refusal, Unavailable once the retries are spent."""
        if r is not None and r.status_code < 400:
            out: dict[str, Any] = r.json()
            return out
        if r is not None and r.status_code not in _RETRY_STATUS:
            raise _error(r)
        if attempt >= self.retries:
            last = exc if exc is not None else f"HTTP {r.status_code if r else '-'}"
            raise Unavailable(f"{what} failed after {self.retries + 1} attempts: {last}")
        return _wait(r, attempt, self.backoff)

    def _fallback(self, why: Exception | str) -> Decision:
        if self.fallback_offer is None:
            raise Unavailable(f"no decision from {self.base_url}: {why}")
        return Decision(offer_id=self.fallback_offer, fallback=True)

    def _batches(self, events: Iterable[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        ready = _with_ids(events)
        return [ready[i : i + self.batch_size] for i in range(0, len(ready), self.batch_size)]

    @staticmethod
    def _add(total: IngestResult, body: Mapping[str, Any]) -> None:
        total.accepted += int(body.get("accepted", 0))
        total.duplicates += int(body.get("duplicates", 0))
        total.attribution.update(body.get("attribution", {}))
        total.batches += 1


class OfferloopClient(_Base):
    """The synchronous client (see the module doc). Use it as a context manager, or call
    :meth:`close`; ``transport``: an httpx transport (tests, proxies)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 5.0,
        decide_timeout: float = 0.25,
        retries: int = 3,
        backoff: float = 0.05,
        batch_size: int = 1000,
        fallback_offer: str | None = None,
        admin_token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            timeout=timeout,
            decide_timeout=decide_timeout,
            retries=retries,
            backoff=backoff,
            batch_size=batch_size,
            fallback_offer=fallback_offer,
            admin_token=admin_token,
        )
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=self.headers
        )

    def __enter__(self) -> OfferloopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def decide(
        self,
        player_id: str,
        *,
        campaign: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The offer for a player, within ``decide_timeout`` (or the fallback offer)."""
        body = _decide_body(player_id, campaign, context)
        attempt = 0
        while True:
            r, exc = None, None
            try:
                r = self._http.post("/v1/decide", json=body, timeout=self.decide_timeout)
            except httpx.TransportError as e:
                exc = e
            outcome = self._decide_outcome(attempt, r, exc)
            if isinstance(outcome, Decision):
                return outcome
            time.sleep(outcome)
            attempt += 1

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Send events in batches of at most ``batch_size``, each retried with the same ids;
        raises :class:`Unavailable` when a batch cannot be delivered (the batches before it
        were), :class:`ApiError` when the service refuses one."""
        total = IngestResult()
        for batch in self._batches(events):
            self._add(total, self._post("/v1/events", {"events": batch}))
        return total

    def decision(self, decision_id: str) -> dict[str, Any]:
        """A logged decision with its revenue so far (``GET /v1/decisions/{id}``)."""
        return self._get(f"/v1/decisions/{decision_id}")

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its offers and what serves it (``GET /v1/campaigns``)."""
        return list(self._get("/v1/campaigns")["campaigns"])

    def health(self) -> dict[str, Any]:
        """The service's health (``GET /healthz``)."""
        return self._get("/healthz")

    def _get(self, path: str) -> dict[str, Any]:
        return self._call("GET", path, None)

    def _post(self, path: str, body: Any) -> dict[str, Any]:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            r, exc = None, None
            try:
                r = self._http.request(method, path, json=body)
            except httpx.TransportError as e:
                exc = e
            outcome = self._call_outcome(f"{method} {path}", attempt, r, exc)
            if isinstance(outcome, dict):
                return outcome
            time.sleep(outcome)
            attempt += 1


class AsyncOfferloopClient(_Base):
    """The asynchronous client: the same calls as :class:`OfferloopClient`, awaited."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 5.0,
        decide_timeout: float = 0.25,
        retries: int = 3,
        backoff: float = 0.05,
        batch_size: int = 1000,
        fallback_offer: str | None = None,
        admin_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            timeout=timeout,
            decide_timeout=decide_timeout,
            retries=retries,
            backoff=backoff,
            batch_size=batch_size,
            fallback_offer=fallback_offer,
            admin_token=admin_token,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=self.headers
        )

    async def __aenter__(self) -> AsyncOfferloopClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def decide(
        self,
        player_id: str,
        *,
        campaign: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The offer for a player, within ``decide_timeout`` (or the fallback offer)."""
        body = _decide_body(player_id, campaign, context)
        attempt = 0
        while True:
            r, exc = None, None
            try:
                r = await self._http.post("/v1/decide", json=body, timeout=self.decide_timeout)
            except httpx.TransportError as e:
                exc = e
            outcome = self._decide_outcome(attempt, r, exc)
            if isinstance(outcome, Decision):
                return outcome
            await asyncio.sleep(outcome)
            attempt += 1

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Send events in batches, each retried with the same ids (see the sync client)."""
        total = IngestResult()
        for batch in self._batches(events):
            self._add(total, await self._call("POST", "/v1/events", {"events": batch}))
        return total

    async def decision(self, decision_id: str) -> dict[str, Any]:
        """A logged decision with its revenue so far."""
        return await self._call("GET", f"/v1/decisions/{decision_id}", None)

    async def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign with its offers and what serves it."""
        return list((await self._call("GET", "/v1/campaigns", None))["campaigns"])

    async def health(self) -> dict[str, Any]:
        """The service's health."""
        return await self._call("GET", "/healthz", None)

    async def _call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            r, exc = None, None
            try:
                r = await self._http.request(method, path, json=body)
            except httpx.TransportError as e:
                exc = e
            outcome = self._call_outcome(f"{method} {path}", attempt, r, exc)
            if isinstance(outcome, dict):
                return outcome
            await asyncio.sleep(outcome)
            attempt += 1
