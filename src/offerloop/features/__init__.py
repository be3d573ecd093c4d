"""Features: one definition per feature, computed point-in-time from the event log."""

from offerloop.features._player import (
    FEATURES,
    FeatureSpec,
    FeatureValue,
    encode,
    encoded_names,
    feature_names,
    player_features,
)

__all__ = [
    "FEATURES",
    "FeatureSpec",
    "FeatureValue",
    "encode",
    "encoded_names",
    "feature_names",
    "player_features",
]
