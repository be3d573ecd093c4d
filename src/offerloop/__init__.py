"""offerloop: the promotion that earns the most from each player, delivered continuously.

``import offerloop`` stays light (no numpy, pydantic, FastAPI, Redis or LightGBM):
:class:`Offerloop`, which wires all of it, and :class:`Settings` are imported on first use
of the name.
"""

from typing import TYPE_CHECKING, Any

from offerloop._clock import Clock, ManualClock, SystemClock, format_ts, parse_rfc3339
from offerloop._errors import (
    ArtifactCorrupt,
    BackendUnavailable,
    CampaignInvalid,
    Conflict,
    DataRejected,
    Forbidden,
    InvalidInput,
    NotFound,
    OfferloopError,
    Overloaded,
    Problem,
    Unauthenticated,
)
from offerloop._version import __version__

if TYPE_CHECKING:
    from offerloop._settings import Settings, load_settings
    from offerloop._system import Offerloop

__all__ = [
    "ArtifactCorrupt",
    "BackendUnavailable",
    "CampaignInvalid",
    "Clock",
    "Conflict",
    "DataRejected",
    "Forbidden",
    "InvalidInput",
    "ManualClock",
    "NotFound",
    "Offerloop",
    "OfferloopError",
    "Overloaded",
    "Problem",
    "Settings",
    "SystemClock",
    "Unauthenticated",
    "__version__",
    "format_ts",
    "load_settings",
    "parse_rfc3339",
]


def __getattr__(name: str) -> Any:
    if name == "Offerloop":
        from offerloop._system import Offerloop

        return Offerloop
    if name in ("Settings", "load_settings"):  # pydantic-settings: imported on first use
        from offerloop import _settings

        return getattr(_settings, name)
    raise AttributeError(f"module 'offerloop' has no attribute {name!r}")
