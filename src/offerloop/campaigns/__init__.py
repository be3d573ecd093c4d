"""Campaigns: bundles × messages = offers, plus rules; loaded from TOML and validated."""

from offerloop.campaigns._load import (
    default_campaign_path,
    load_campaign,
    load_campaigns,
    parse_campaign,
)
from offerloop.campaigns._model import (
    Bundle,
    Campaign,
    Cap,
    Condition,
    Message,
    Offer,
    Rule,
    offer_keys,
)

__all__ = [
    "Bundle",
    "Campaign",
    "Cap",
    "Condition",
    "Message",
    "Offer",
    "Rule",
    "default_campaign_path",
    "load_campaign",
    "load_campaigns",
    "offer_keys",
    "parse_campaign",
]
