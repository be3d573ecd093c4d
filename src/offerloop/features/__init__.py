"""Features: defined once, computed online (fresh within milliseconds) and offline
(point-in-time, in DuckDB) with the same values by construction."""

from offerloop.features._columnar import ColumnarStore, SyncResult, columnar_properties
from offerloop.features._defs import (
    AGGREGATIONS,
    Aggregate,
    Batch,
    Context,
    EventSchema,
    Feature,
    FeatureSet,
    FeatureValue,
    OfferHistory,
    Profile,
    SinceLast,
    Sql,
    aggregate,
    batch,
    context,
    offer_history,
    parse_duration,
    profile,
    since_last,
    sql,
)
from offerloop.features._encode import Encoder
from offerloop.features._load import DEFAULT_FEATURES, load_features
from offerloop.features._offline import OfflineEngine, QueryRows
from offerloop.features._online import (
    FeatureReading,
    InMemoryOnlineStore,
    OnlineFeatures,
    OnlineStore,
    PlayerState,
)
from offerloop.features._player import PlayerFeatures
from offerloop.features._reference import reference_features

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_FEATURES",
    "Aggregate",
    "Batch",
    "ColumnarStore",
    "Context",
    "Encoder",
    "EventSchema",
    "Feature",
    "FeatureReading",
    "FeatureSet",
    "FeatureValue",
    "InMemoryOnlineStore",
    "OfferHistory",
    "OfflineEngine",
    "OnlineFeatures",
    "OnlineStore",
    "PlayerFeatures",
    "PlayerState",
    "Profile",
    "QueryRows",
    "SinceLast",
    "Sql",
    "SyncResult",
    "aggregate",
    "batch",
    "columnar_properties",
    "context",
    "load_features",
    "offer_history",
    "parse_duration",
    "profile",
    "reference_features",
    "since_last",
    "sql",
]
