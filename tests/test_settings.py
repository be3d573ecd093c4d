"""Settings are data: precedence, validation, and every setting documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offerloop import InvalidInput, load_settings
from offerloop._settings import setting_fields, settings_markdown

DOCS = Path(__file__).parents[1] / "docs" / "settings.md"


def test_precedence_override_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "offerloop.toml"
    cfg.write_text('epsilon = 0.3\nmax_batch_events = 50\ncampaigns = ["a.toml"]\n')
    s = load_settings(cfg, env={"OFFERLOOP_EPSILON": "0.2"})
    assert s.epsilon == 0.2  # env beats file
    assert s.max_batch_events == 50  # file beats default
    assert s.campaigns == ("a.toml",)
    assert s.attribution_window_hours == 24.0  # default
    s = load_settings(cfg, env={"OFFERLOOP_EPSILON": "0.2"}, epsilon=0.05)
    assert s.epsilon == 0.05  # explicit override beats env


def test_env_lists_and_numbers() -> None:
    s = load_settings(env={"OFFERLOOP_CAMPAIGNS": "a.toml, b.toml", "OFFERLOOP_DECISION_SEED": "4"})
    assert s.campaigns == ("a.toml", "b.toml")
    assert s.decision_seed == 4


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({"OFFERLOOP_EPSILON": "lots"}, "OFFERLOOP_EPSILON"),
        ({"OFFERLOOP_EPSILON": "2"}, "OFFERLOOP_EPSILON: epsilon: .*less than or equal to 1"),
        ({"OFFERLOOP_CANARY_MAX_SHARE": "0.1"}, "canary_max_share: must be >= canary_share"),
        ({"OFFERLOOP_PIPELINE_TIMEZONE": "Mars/Base"}, "pipeline_timezone: 'Mars/Base'"),
        ({"OFFERLOOP_PIPELINE_SCHEDULE": "0 25 * * *"}, "pipeline_schedule: .*hour field"),
        ({"OFFERLOOP_LEARNERS": "linear,deep"}, "learners: 'deep' is not a learner"),
        ({"OFFERLOOP_PORT": "70000"}, "port"),
        ({"OFFERLOOP_MAX_BATCH_EVENTS": "1.5"}, "OFFERLOOP_MAX_BATCH_EVENTS"),
        ({"OFFERLOOP_DURABILITY": "maybe"}, "durability"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], text: str) -> None:
    with pytest.raises(InvalidInput, match=text):
        load_settings(env=env)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "offerloop.toml"
    cfg.write_text("epsilom = 0.1\n")
    with pytest.raises(InvalidInput, match="epsilom: unknown setting"):
        load_settings(cfg, env={})


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.M))
    assert documented == set(setting_fields())
    assert settings_markdown() in text, "regenerate: python scripts/regen_docs.py"


def test_the_example_file_lists_every_setting_and_loads_as_the_defaults(tmp_path: Path) -> None:
    """offerloop.example.toml is generated from the declarations (regenerate: python
    scripts/regen_docs.py); every line uncommented is a valid file equal to the defaults."""
    from offerloop._settings import settings_toml

    example = (Path(__file__).parents[1] / "offerloop.example.toml").read_text()
    assert example == settings_toml(), "regenerate: python scripts/regen_docs.py"
    names = set(re.findall(r"^# (\w+) = ", example, flags=re.M))
    assert names == set(setting_fields())
    live = "\n".join(
        line[2:] if re.match(r"# \w+ = ", line) else line for line in example.splitlines()
    )
    cfg = tmp_path / "offerloop.toml"
    cfg.write_text(live)
    assert load_settings(cfg, env={}) == load_settings(env={})


def test_sections_group_settings_that_keep_one_name(tmp_path: Path) -> None:
    cfg = tmp_path / "offerloop.toml"
    cfg.write_text(
        'campaigns = ["a.toml"]\n[policy]\nepsilon = 0.3\n[serving]\nport = 9000\n'
        '[catalog]\ndefault_campaign = "a"\n'
    )
    s = load_settings(cfg, env={})
    assert (s.epsilon, s.port, s.campaigns, s.default_campaign) == (0.3, 9000, ("a.toml",), "a")
    assert load_settings(cfg, env={"OFFERLOOP_EPSILON": "0.2"}).epsilon == 0.2
    from offerloop._settings import SECTIONS

    assert not set(SECTIONS) & set(setting_fields()), "a section named like a setting"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[serving]\nepsilon = 0.3\n", r"\[serving\] epsilon: belongs in \[policy\]"),
        ("epsilon = 0.3\n[policy]\nepsilon = 0.2\n", "epsilon: given twice"),
        ("[policy]\nepsilom = 0.2\n", r"\[policy\] epsilom: unknown setting"),
        ("exploration = 3\n", "exploration: .*'squarecb'"),
        ("serving = 3\n", "serving: a section: write it as a \\[table\\]"),
        ("[policy]\nepsilon = 'x'\n", "offerloop.toml: epsilon: .*valid number"),
        ("epsilon = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_key_and_its_section(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "offerloop.toml"
    cfg.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_settings(cfg, env={})


def test_secrets_are_never_printed(tmp_path: Path) -> None:
    """Not by repr, not by `offerloop settings` (table or --json), not in an error message."""
    from offerloop._settings import shown
    from tests.cli.runner import run

    env = {
        "OFFERLOOP_ADMIN_TOKEN": "tok-SECRET1",
        "OFFERLOOP_DECISION_TOKEN_SECRET": "hmac-SECRET2",
        "OFFERLOOP_DATABASE_URL": "postgresql://app:pw-SECRET3@db.example:5432/game",
    }
    s = load_settings(env=env)
    assert s.admin_token.get_secret_value() == "tok-SECRET1"
    assert s.decision_token_secret.get_secret_value() == "hmac-SECRET2"
    assert s.database_url.endswith("pw-SECRET3@db.example:5432/game")  # the code sees them
    printed = [repr(s), str(s), str(shown(s))]
    for args in (["settings"], ["settings", "--json"]):
        p = run(*args, cwd=tmp_path, env=env)
        assert p.returncode == 0, p.stderr
        assert "postgresql://app:***@db.example" in p.stdout
        printed.append(p.stdout + p.stderr)
    bad = {**env, "OFFERLOOP_DATABASE_URL": "mysql://app:pw-SECRET3@db", "OFFERLOOP_PORT": "x"}
    with pytest.raises(InvalidInput) as caught:
        load_settings(env=bad)
    assert "database_url: must start with postgresql://" in str(caught.value)
    printed.append(str(caught.value))
    p = run("settings", cwd=tmp_path, env=bad)
    assert p.returncode == 2
    printed.append(p.stdout + p.stderr)
    for text in printed:
        assert not re.search("SECRET[123]", text), text


def test_replace_validates_and_a_child_process_rebuilds_the_same_settings() -> None:
    from offerloop import Settings

    s = load_settings(env={}).replace(admin_token="t", campaigns=["a.toml"], epsilon=0.2)
    assert s.admin_token.get_secret_value() == "t"
    assert s.campaigns == ("a.toml",)
    assert Settings(**s.to_doc()) == s
    with pytest.raises(ValueError, match="epsilon"):
        s.replace(epsilon=3)
