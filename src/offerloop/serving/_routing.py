"""Routes whose JSON bodies are parsed strictly (every router of the app uses it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from offerloop._limits import strict_json_loads

__all__ = ["StrictJSONRoute"]


class _StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = strict_json_loads(body)
            except json.JSONDecodeError:
                raise
            except (ValueError, UnicodeDecodeError) as exc:
                raise json.JSONDecodeError(str(exc), "", 0) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """Routes whose JSON bodies are parsed strictly: ``NaN``/``Infinity``, nesting too deep
    and numbers with too many digits are malformed JSON (400), not a crash."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictRequest(request.scope, request.receive))

        return strict
