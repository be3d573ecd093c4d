from __future__ import annotations

from pathlib import Path

import pytest

from offerloop import CampaignInvalid
from offerloop.campaigns import default_campaign_path, load_campaign, parse_campaign
from offerloop.features import load_features

GOOD = """
id = "c1"
[[bundles]]
id = "b1"
products = { coins = 10 }
price = 1.5
[[bundles]]
id = "b2"
products = { gems = 1 }
price = 3
[[messages]]
id = "m1"
text = "hello"
[[rules]]
when = ["level >= 10", 'platform == "ios"']
offer = "b2:m1"
"""


def test_default_campaign_is_valid_and_large_enough() -> None:
    c = load_campaign(default_campaign_path(), features=load_features().names)
    assert len(c.bundles) >= 6
    assert len(c.messages) >= 4
    assert len(c.offers) == len(c.bundles) * len(c.messages)
    assert c.has_offer(c.default_offer)


def test_offers_are_bundle_times_message() -> None:
    c = parse_campaign(GOOD, features=load_features().names)
    assert c.offer_ids == ["b1:m1", "b2:m1"]
    assert c.default_offer == "b1:m1"
    assert c.rules[0].matches({"level": 12.0, "platform": "ios"})
    assert not c.rules[0].matches({"level": 12.0, "platform": "android"})
    assert not c.rules[0].matches({"level": "12", "platform": "ios"})


def test_every_problem_is_reported_with_its_location() -> None:
    bad = GOOD.replace("price = 3", "price = -1").replace('text = "hello"', "text = 3")
    bad = bad.replace('"level >= 10"', '"levle >= 10"') + '\n[[bundles]]\nid = "b1"\n'
    with pytest.raises(CampaignInvalid) as info:
        parse_campaign(bad, source="campaign.toml", features=load_features().names)
    msgs = [str(p) for p in info.value.problems]
    assert "campaign.toml: bundles[1].price: must be > 0" in msgs
    assert "campaign.toml: messages[0].text: must be a non-empty string" in msgs
    assert any(
        m.startswith("campaign.toml: rules[0].when[0]: unknown feature 'levle'") for m in msgs
    )
    assert any(m.startswith("campaign.toml: bundles[2].price: is required") for m in msgs)
    assert len(msgs) >= 4


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("id = 'x'\nbundles = 3\n[[messages]]\nid='m'\ntext='t'", "bundles"),
        ("id = 'X Y'\n" + GOOD.split("\n", 2)[2], "id"),
        (GOOD + "\nextra = 1", "extra"),
        (GOOD.replace('offer = "b2:m1"', 'offer = "b9:m1"'), "rules[0].offer"),
        (GOOD.replace("coins = 10", "coins = 0"), "bundles[0].products.coins"),
        ("id = 'c'\n[[bundles", "not valid TOML"),
    ],
)
def test_specific_problems(text: str, where: str) -> None:
    with pytest.raises(CampaignInvalid) as info:
        parse_campaign(text, features=load_features().names)
    assert where in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CampaignInvalid, match="cannot read campaign file"):
        load_campaign(tmp_path / "nope.toml")
