"""Storage backends: tiny protocols, records, and the registry of implementations.

Backends are listed as (name, dotted path) and imported only when chosen, so a backend's
driver is never imported unless used.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from offerloop._errors import InvalidInput
from offerloop._settings import Settings
from offerloop.backends._protocols import (
    ArtifactStore,
    Backend,
    CapLedger,
    DecisionLog,
    DeploymentStore,
    EventLog,
    LoadLog,
    ModelStore,
    Quarantine,
    RunLog,
)
from offerloop.backends._records import (
    OFFER_OUTCOME,
    DecisionRecord,
    DeploymentRecord,
    EventRecord,
    ModelRecord,
    QuarantinedRecord,
    ShadowChoice,
    TransitionRecord,
)

__all__ = [
    "BACKENDS",
    "OFFER_OUTCOME",
    "ArtifactStore",
    "Backend",
    "CapLedger",
    "DecisionLog",
    "DecisionRecord",
    "DeploymentRecord",
    "DeploymentStore",
    "EventLog",
    "EventRecord",
    "LoadLog",
    "ModelRecord",
    "ModelStore",
    "Quarantine",
    "QuarantinedRecord",
    "RunLog",
    "ShadowChoice",
    "TransitionRecord",
    "backend_name",
    "open_backend",
]

BACKENDS: dict[str, str] = {
    "sqlite": "offerloop.backends._sqlite:SQLiteBackend",
    "postgres": "offerloop.backends._postgres:PostgresBackend",
}


def backend_name(settings: Settings) -> str:
    """``postgres`` when ``database_url`` is set, else the embedded ``sqlite``."""
    return "postgres" if settings.database_url else "sqlite"


def open_backend(settings: Settings, name: str | None = None, **kwargs: Any) -> Backend:
    """Open the backend ``name`` (default: PostgreSQL with a ``database_url``, else the
    embedded SQLite) with its settings; ``kwargs`` go to its constructor. InvalidInput for
    an unknown name."""
    name = name or backend_name(settings)
    try:
        target = BACKENDS[name]
    except KeyError:
        raise InvalidInput(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})") from None
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if name == "postgres":
        return cast(
            Backend,
            cls(
                settings.database_url,
                schema=settings.database_schema,
                timeout=settings.database_timeout_seconds,
                **kwargs,
            ),
        )
    return cast(Backend, cls(settings.data_dir, durability=settings.durability, **kwargs))
