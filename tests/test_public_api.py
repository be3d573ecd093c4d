"""The public API is what the package __init__ files export; this pins it."""

from __future__ import annotations

import importlib

import offerloop

PUBLIC = {
    "offerloop": {
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
    },
}
PACKAGES = [
    "backends",
    "campaigns",
    "cli",
    "events",
    "features",
    "monitoring",
    "pipeline",
    "policies",
    "registry",
    "serving",
    "sim",
    "testing",
    "training",
]


def test_root_api_is_pinned() -> None:
    assert set(offerloop.__all__) == PUBLIC["offerloop"]


def test_every_subpackage_declares_and_exports_its_api() -> None:
    for name in PACKAGES:
        mod = importlib.import_module(f"offerloop.{name}")
        assert mod.__all__, name
        for symbol in mod.__all__:
            assert hasattr(mod, symbol), f"offerloop.{name}.{symbol}"
