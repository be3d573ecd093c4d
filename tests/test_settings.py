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
        ({"OFFERLOOP_EPSILON": "2"}, "epsilon: must be between 0 and 1"),
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
    assert documented == {f.name for f in setting_fields()}
    assert settings_markdown() in text, "regenerate: python scripts/regen_docs.py"


def test_the_example_file_lists_every_setting_and_loads_as_the_defaults(tmp_path: Path) -> None:
    """offerloop.example.toml is generated from the declarations (regenerate: python
    scripts/regen_docs.py); every line uncommented is a valid file equal to the defaults."""
    from offerloop._settings import settings_toml

    example = (Path(__file__).parents[1] / "offerloop.example.toml").read_text()
    assert example == settings_toml(), "regenerate: python scripts/regen_docs.py"
    names = set(re.findall(r"^# (\w+) = ", example, flags=re.M))
    assert names == {f.name for f in setting_fields()}
    live = "\n".join(
        line[2:] if re.match(r"# \w+ = ", line) else line for line in example.splitlines()
    )
    cfg = tmp_path / "offerloop.toml"
    cfg.write_text(live)
    assert load_settings(cfg, env={}) == load_settings(env={})
