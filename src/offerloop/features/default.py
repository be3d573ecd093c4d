"""The feature definitions of the simulated game: copy this file to start your own.

Point the setting ``features`` at your module (``mygame.features``) or file
(``features.py``); it must define ``FEATURES``, a :class:`~offerloop.features.FeatureSet`.
"""

from offerloop.features import (
    FeatureSet,
    aggregate,
    context,
    offer_history,
    profile,
    since_last,
)

COUNTRIES = ("us", "gb", "de", "jp", "fr", "br", "in", "mx")
# the default campaign's bundles and messages (campaigns/default.toml)
BUNDLES = ("starter", "coins", "boosters", "gems", "cosmetic", "mega")
MESSAGES = ("discount", "urgency", "social", "progress")

FEATURES = FeatureSet(
    [
        # profile attributes, set by player_profile events
        profile("country", categories=COUNTRIES, help="ISO 3166 alpha-2, lower case."),
        profile("platform", categories=("ios", "android")),
        # progress
        aggregate(
            "level",
            "level_up",
            "last",
            property="level",
            type="int",
            default=1,
            transform="identity",
            scale=50,
            help="Latest level reached.",
        ),
        aggregate("level_ups_7d", "level_up", "count", "7d"),
        # spending
        aggregate("purchases_total", "purchase", "count", help="Lifetime purchases."),
        aggregate("purchases_24h", "purchase", "count", "24h"),
        aggregate("purchases_7d", "purchase", "count", "7d"),
        aggregate("spend_total", "purchase", "sum", property="amount", scale=5),
        aggregate("spend_30d", "purchase", "sum", "30d", property="amount", scale=5),
        aggregate("mean_purchase", "purchase", "mean", property="amount", scale=5),
        aggregate("max_purchase_30d", "purchase", "max", "30d", property="amount", scale=5),
        aggregate("min_purchase_30d", "purchase", "min", "30d", property="amount", scale=5),
        aggregate("big_purchases_30d", "purchase", "count", "30d", where="amount >= 20"),
        aggregate(
            "distinct_amounts_30d",
            "purchase",
            "distinct_count",
            "30d",
            property="amount",
            help="How many different price points were bought.",
        ),
        since_last(
            "hours_since_purchase",
            "purchase",
            scale=10,
            help="Hours since the last purchase; 8760 if none.",
        ),
        # engagement
        aggregate("sessions_1h", "session_start", "count", "1h"),
        aggregate("sessions_24h", "session_start", "count", "24h"),
        aggregate("sessions_7d", "session_start", "count", "7d", scale=3),
        since_last("hours_since_session", "session_start", scale=10),
        # the player's own offer history: seen, bought, ignored per bundle and message
        *offer_history(BUNDLES, by="bundle", window="30d"),
        *offer_history(MESSAGES, by="message", window="30d"),
        # request context
        context(
            "local_hour",
            type="float",
            default=12.0,
            scale=24,
            help="Player's local hour, sent with the decision request.",
        ),
    ],
    source="offerloop.features.default",
)
