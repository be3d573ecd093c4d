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
    DecisionLog,
    DeploymentStore,
    EventLog,
    LoadLog,
    ModelStore,
)
from offerloop.backends._records import (
    DecisionRecord,
    DeploymentRecord,
    EventRecord,
    ModelRecord,
    ShadowChoice,
    TransitionRecord,
)

__all__ = [
    "BACKENDS",
    "ArtifactStore",
    "Backend",
    "DecisionLog",
    "DecisionRecord",
    "DeploymentRecord",
    "DeploymentStore",
    "EventLog",
    "EventRecord",
    "LoadLog",
    "ModelRecord",
    "ModelStore",
    "ShadowChoice",
    "TransitionRecord",
    "open_backend",
]

BACKENDS: dict[str, str] = {
    "sqlite": "offerloop.backends._sqlite:SQLiteBackend",
}


def open_backend(settings: Settings, name: str = "sqlite", **kwargs: Any) -> Backend:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise InvalidInput(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})") from None
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cast(Backend, cls(settings.data_dir, durability=settings.durability, **kwargs))
