"""The one place where errors become HTTP answers: a status and a JSON body naming the problem.

Body: ``{"error": {"type": ..., "message": ..., "problems": [{"location", "message"}]}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from offerloop._errors import (
    ArtifactCorrupt,
    BackendUnavailable,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OfferloopError,
    Overloaded,
    Problem,
    Unauthenticated,
)
from offerloop._metrics import Metrics

__all__ = ["STATUS", "error_answer", "error_body", "install_error_handlers", "location"]

STATUS: tuple[tuple[type[OfferloopError], int, str], ...] = (
    (InvalidInput, 422, "invalid_input"),
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (BackendUnavailable, 503, "backend_unavailable"),
    (Overloaded, 503, "overloaded"),
    (ArtifactCorrupt, 500, "artifact_corrupt"),
    (OfferloopError, 500, "error"),
)


def location(loc: Sequence[int | str]) -> str:
    """("body", "events", 3, "ts") → "events[3].ts"."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def error_body(kind: str, message: str, problems: Sequence[Problem] = ()) -> dict[str, Any]:
    """The one JSON shape of every error answer."""
    return _body(kind, message, problems or [Problem("", message)])


def _text(s: str) -> str:
    """Text that can always be sent: a client's unpaired surrogates (in a key it sent, say)
    are written as ``\\udXXX`` escapes instead of making the error answer unencodable."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _body(kind: str, message: str, problems: Sequence[Problem]) -> dict[str, Any]:
    return {
        "error": {
            "type": kind,
            "message": _text(message),
            "problems": [
                {"location": _text(p.location), "message": _text(p.message)} for p in problems
            ],
        }
    }


def error_answer(
    exc: Exception, metrics: Metrics
) -> tuple[int, dict[str, str] | None, dict[str, Any]]:
    """Status, headers and JSON body for an exception raised while answering (counted)."""
    if not isinstance(exc, OfferloopError):
        metrics.errors.labels("internal").inc()
        return 500, None, _body("internal_error", "internal error; see the service log", [])
    status, kind = next((st, k) for cls, st, k in STATUS if isinstance(exc, cls))
    problems = exc.problems if isinstance(exc, InvalidInput) else [Problem("", exc.message)]
    metrics.errors.labels("client" if status < 500 else kind).inc()
    headers = None
    if status == 503:
        wait = exc.retry_after if isinstance(exc, Overloaded) else 1.0
        headers = {"Retry-After": str(max(1, round(wait)))}
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="offerloop-admin"'}
    return status, headers, _body(kind, exc.message, problems)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        status = 422
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                status = 400
                detail = (err.get("ctx") or {}).get("error") or err.get("msg", "")
                problems.append(Problem("body", f"malformed JSON: {detail}"))
            elif err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",):
                status = 400
                problems.append(Problem("body", "a JSON body is required"))
            else:
                problems.append(Problem(location(err.get("loc", ())), str(err.get("msg", ""))))
        metrics.errors.labels("client").inc()
        message = "; ".join(str(p) for p in problems)
        kind = "malformed_request" if status == 400 else "invalid_input"
        return JSONResponse(_body(kind, message, problems), status_code=status)

    async def on_offerloop(request: Request, exc: Exception) -> JSONResponse:
        status, headers, body = error_answer(exc, metrics)
        return JSONResponse(body, status_code=status, headers=headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        status, headers, body = error_answer(exc, metrics)
        return JSONResponse(body, status_code=status, headers=headers)

    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own errors (unknown route, wrong method, a body it cannot parse) in
        our shape."""
        kinds = {404: "not_found", 405: "method_not_allowed", 400: "malformed_request"}
        kind = kinds.get(exc.status_code, "http_error")
        if exc.status_code < 500:
            metrics.errors.labels("client").inc()
        return JSONResponse(
            error_body(kind, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(OfferloopError, on_offerloop)
    app.add_exception_handler(Exception, on_unexpected)
