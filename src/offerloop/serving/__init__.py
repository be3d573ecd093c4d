"""Serving: the HTTP API over one offerloop (FastAPI app, admin and monitoring routes, error
translation, server) and an in-process client for it. The decision path itself lives in
``offerloop.decisions``."""

from offerloop.serving._app import MAX_BODY_BYTES, create_app
from offerloop.serving._inprocess import InProcessClient

__all__ = ["MAX_BODY_BYTES", "InProcessClient", "create_app"]
