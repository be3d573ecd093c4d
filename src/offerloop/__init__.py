"""offerloop: the promotion that earns the most from each player, delivered continuously."""

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
from offerloop._settings import Settings, load_settings
from offerloop._system import Offerloop
from offerloop._version import __version__

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
