"""Who may see what, and when: eligibility conditions on bundles and messages and a campaign's
schedule. A decision draws only among the eligible offers and logs the probability among
them; the logged row keeps them, so off-policy evaluation restricts a candidate the same way
and stays exact; a request no offer fits gets the campaign's default, never an error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from offerloop import ManualClock, Offerloop, Settings, format_ts
from offerloop._errors import CampaignInvalid
from offerloop.campaigns import default_campaign_path, parse_campaign
from offerloop.events import EventIn
from offerloop.policies import ELIGIBLE, FixedPolicy, LoggedData, RandomPolicy
from offerloop.training import ips
from offerloop.training._estimators import target_probabilities
from tests.conftest import BACKENDS, T0, open_system

FEATURES = {"purchases_total", "level", "platform", "country", "spend_total"}


def _campaign_text(extra: str = "") -> str:
    """The default campaign with eligibility: the starter pack only for players who never
    paid, the mega bundle from level 20, the progress message from level 10."""
    text = default_campaign_path().read_text()
    text = text.replace(
        'id = "starter"\nproducts = { coins = 500, boosters = 1 }\nprice = 0.99\n',
        'id = "starter"\nproducts = { coins = 500, boosters = 1 }\nprice = 0.99\n'
        'eligible = ["purchases_total < 1"]\n',
    )
    text = text.replace("price = 49.99\n", 'price = 49.99\neligible = "level >= 20"\n')
    text = text.replace('id = "progress"\n', 'id = "progress"\neligible = ["level >= 10"]\n')
    return extra + text


def test_conditions_and_schedule_are_read_and_checked() -> None:
    c = parse_campaign(
        _campaign_text('start = 2026-03-01T09:00:00+01:00\nend = "2026-03-08T00:00:00Z"\n'),
        features=FEATURES,
    )
    assert c.start == T0 - 28 * 3600  # 09:00 in UTC+1 on the day before T0 (12:00 UTC)
    assert c.end == T0 + 5.5 * 86400
    assert c.restricted
    assert c.running(T0)
    assert not c.running(c.end)  # type: ignore[arg-type]
    new = {"purchases_total": 0, "level": 5}
    whale = {"purchases_total": 3, "level": 40}
    assert c.eligible(new, T0) == [
        o.id for o in c.offers if o.bundle.id != "mega" and o.message.id != "progress"
    ]
    assert c.eligible(whale, T0) == [o.id for o in c.offers if o.bundle.id != "starter"]
    assert c.eligible(new, T0 - 2 * 86400) == []  # before the start: nothing
    assert c.shown_among([]) == [c.default_offer]
    plain = parse_campaign(default_campaign_path().read_text())
    assert not plain.restricted
    assert plain.eligible(new, T0) is None


@pytest.mark.parametrize(
    ("extra", "replace", "message"),
    [
        ("", ('"level >= 20"', '["lvl >= 20"]'), "bundles\\[5\\].eligible\\[0\\].*unknown feature"),
        ("", ('"level >= 20"', "3"), "bundles\\[5\\].eligible: must be a condition string"),
        ("start = 2026-03-01T09:00:00\n", ("", ""), "needs a time zone"),
        ('start = "2026-03-02"\n', ("", ""), "RFC 3339"),
        (
            'start = "2026-03-02T00:00:00Z"\nend = "2026-03-01T00:00:00Z"\n',
            ("", ""),
            "must be after start",
        ),
    ],
)
def test_bad_conditions_and_schedules_are_refused_with_their_place(
    extra: str, replace: tuple[str, str], message: str
) -> None:
    text = _campaign_text(extra)
    if replace[0]:
        text = text.replace(*replace)
    with pytest.raises(CampaignInvalid, match=message):
        parse_campaign(text, features=FEATURES)


@pytest.fixture(params=BACKENDS)
def restricted(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[Offerloop]:
    path = tmp_path / "campaign.toml"
    path.write_text(_campaign_text())
    with open_system(
        request.param, settings.replace(campaigns=(str(path),)), ManualClock(T0)
    ) as system:
        yield system


def _events(player: str, level: int, purchases: int) -> list[EventIn]:
    out = [
        EventIn(
            event_id=f"{player}-lvl",
            player_id=player,
            type="level_up",
            ts=format_ts(T0 - 3600),
            properties={"level": level},
        )
    ]
    out += [
        EventIn(
            event_id=f"{player}-buy{i}",
            player_id=player,
            type="purchase",
            ts=format_ts(T0 - 7200 + i),
            properties={"amount": 4.99},
        )
        for i in range(purchases)
    ]
    return out


def test_decisions_draw_only_among_eligible_offers_with_exact_propensities(
    restricted: Offerloop,
) -> None:
    system = restricted
    system.ingest(_events("newbie", 5, 0) + _events("veteran", 30, 2))
    system.player_features.follow()
    c = system.campaign(None)
    seen: dict[str, set[str]] = {"newbie": set(), "veteran": set()}
    for i in range(300):
        player = "newbie" if i % 2 else "veteran"
        d = system.decide(player, context={"local_hour": 9})
        allowed = c.eligible(d.record.features, T0)
        assert allowed is not None
        assert d.record.features[ELIGIBLE] == allowed
        assert d.record.offer_id in allowed
        # the release is uniform random: the logged propensity is 1 / (eligible offers)
        assert d.record.propensity == pytest.approx(1.0 / len(allowed))
        seen[player].add(d.record.offer_id)
    assert all(not o.startswith("mega:") and not o.endswith(":progress") for o in seen["newbie"])
    assert all(not o.startswith("starter:") for o in seen["veteran"])
    assert any(o.startswith("mega:") for o in seen["veteran"])
    # the log keeps each decision's eligible offers for training and evaluation
    system.commit_journals()
    logged = system.backend.decisions(c.id, 0.0, T0 + 1)
    assert len(logged) == 300
    assert all(r.training_row[ELIGIBLE] == c.eligible(r.features, T0) for r in logged)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_campaign_out_of_its_schedule_answers_its_default_offer(
    backend: str, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(_campaign_text('start = "2026-03-05T00:00:00Z"\n'))
    with open_system(backend, settings.replace(campaigns=(str(path),)), ManualClock(T0)) as system:
        d = system.decide("anyone", context={"local_hour": 9})
        c = system.campaign(None)
        assert d.record.offer_id == c.default_offer
        assert d.record.propensity == 1.0
        assert "not running" in d.record.fallback
        assert d.record.features[ELIGIBLE] == [c.default_offer]


def test_off_policy_evaluation_on_restricted_logs_matches_the_truth() -> None:
    """Logged by uniform random among each row's eligible offers, a candidate that always
    wants the mega bundle is worth, per row, its restricted distribution's expected reward
    (uniform among the eligible when mega is not one of them). IPS with the restricted
    candidate finds that value; the unrestricted candidate would be scored far off."""
    c = parse_campaign(_campaign_text(), features=FEATURES)
    rng = np.random.default_rng(3)
    means = rng.uniform(0.0, 1.0, len(c.offers))
    target = FixedPolicy(c.offer_ids, [1.0 if o == "mega:urgency" else 0.0 for o in c.offer_ids])
    rows = []
    for i in range(20000):
        row = {"purchases_total": i % 3, "level": 5 + 10 * (i % 4)}
        allowed = c.eligible(row, T0)
        assert allowed
        rows.append({**row, ELIGIBLE: allowed})
    logging = RandomPolicy(c.offer_ids).act_eligible(rows)
    shown = (logging.cumsum(axis=1) < rng.random((len(rows), 1))).sum(axis=1)
    shown = np.minimum(shown, len(c.offers) - 1)
    n = np.arange(len(rows))
    offers = [c.offer_ids[a] for a in shown]
    rewards = (rng.random(len(rows)) < means[shown]).astype(float)
    props = logging[n, shown]
    truth = target.act_eligible(rows) @ means
    data = LoggedData(rows, offers, rewards, props, np.zeros(len(rows)))
    est = ips(target_probabilities(target, data), data.propensities, data.rewards)
    want = float(np.mean(truth))
    assert abs(est.value - want) < 4 * est.se
    naive = target.act_batch(rows)[n, shown]
    wrong = ips(naive, data.propensities, data.rewards)
    assert abs(wrong.value - want) > 6 * est.se


def test_the_documented_example_is_a_valid_campaign() -> None:
    text = (Path(__file__).parents[2] / "docs" / "campaigns.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    c = parse_campaign(block.group(1), features=FEATURES)
    assert c.restricted
    assert c.eligible({"purchases_total": 0, "level": 12}, c.start or 0.0) == ["starter:progress"]
    assert c.eligible({"purchases_total": 0, "level": 5}, c.start or 0.0) == []


def test_routine_notes_are_ordinary_decisions_and_faults_are_not() -> None:
    """What the controller compares arms on: eligibility, schedule and caps shape every arm
    alike; a failed model or default features do not."""
    from offerloop.decisions import ordinary

    assert ordinary("")
    assert ordinary("no eligible offer: the default")
    assert ordinary("caps: not applied (down); campaign not running: the default")
    assert not ordinary("features: defaults (Redis down)")
    assert not ordinary("no eligible offer: the default; release r-1 failed: boom")
