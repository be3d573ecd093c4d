"""Feature definitions fail at load time with a message naming the feature."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offerloop import InvalidInput
from offerloop.features import (
    EventSchema,
    FeatureSet,
    aggregate,
    context,
    load_features,
    parse_duration,
    profile,
    since_last,
    sql,
)
from tests.helpers import examples


def test_default_set_loads_with_about_twenty_features() -> None:
    fs = load_features()
    assert len(fs) >= 20
    assert len(fs.encoded_names()) > len(fs)


@pytest.mark.parametrize(
    ("feature", "text"),
    [
        (aggregate("x", "purchse", "count"), "x: unknown event type 'purchse'"),
        (aggregate("x", "purchase", "sum", property="amout"), "x: unknown property 'amout'"),
        (aggregate("x", "purchase", "sum", "fortnight", property="amount"), "x: bad window"),
        (aggregate("x", "purchase", "sum", "-1h", property="amount"), "x: bad window"),
        (aggregate("x", "purchase", "median", property="amount"), "x: aggregation must be"),
        (aggregate("x", "purchase", "sum", property="decision_id"), "x: sum needs a numeric"),
        (aggregate("x", "purchase", "count", property="amount"), "x: count takes no property"),
        (aggregate("x", "purchase", "sum"), "x: sum needs a property"),
        (
            aggregate("x", "purchase", "sum", property="amount", type="category"),
            "x: sum gives a number",
        ),
        (
            aggregate("x", "purchase", "count", where="colour == 'red'"),
            "x: filter on unknown property 'colour'",
        ),
        (since_last("x", "purchase", unit="fortnights"), "x: unit must be"),
        (profile("x", type="int", default="a"), "x: default 'a' is not of type int"),
        (profile("Bad Name"), "Bad Name: name must be lower_snake_case"),
        (sql("x", "mysql://h/db", "select 1"), "x: url must start with"),
        (context("x", type="decimal"), "x: type must be one of"),
    ],
)
def test_invalid_definitions_name_the_feature(feature: object, text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        FeatureSet([feature], source="mine.py")  # type: ignore[list-item]
    assert f"mine.py: {text}" in str(info.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(InvalidInput, match="n: is defined twice"):
        FeatureSet([aggregate("n", "purchase", "count"), aggregate("n", "level_up", "count")])


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as info:
        FeatureSet([aggregate("a", "nope", "count"), aggregate("b", "purchase", "avg")])
    assert len(info.value.problems) == 2


def test_custom_event_types_are_declared() -> None:
    ads = EventSchema("ad_watched", {"network": "category", "reward": "float"})
    fs = FeatureSet(
        [
            aggregate("ads_24h", "ad_watched", "count", "24h", where="network == 'x'"),
            aggregate("ad_reward", "ad_watched", "sum", property="reward"),
        ],
        events=[ads],
    )
    assert fs.names == ["ads_24h", "ad_reward"]


def test_bad_filter_syntax_fails_when_defined() -> None:
    with pytest.raises(ValueError, match="is not a filter"):
        aggregate("x", "purchase", "count", where="amount is big")


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("24h") == parse_duration("1d") == 86400
    assert parse_duration("lifetime") == float("inf")


def test_load_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "feats.py"
    f.write_text(
        "from offerloop.features import FeatureSet, aggregate\n"
        "FEATURES = FeatureSet([aggregate('n_buys', 'purchase', 'count')])\n"
    )
    assert load_features(str(f)).names == ["n_buys"]
    (tmp_path / "bad.py").write_text("FEATURES = 3\n")
    with pytest.raises(InvalidInput, match="must define FEATURES"):
        load_features(str(tmp_path / "bad.py"))
    with pytest.raises(InvalidInput, match="does not exist"):
        load_features(str(tmp_path / "none.py"))
    with pytest.raises(InvalidInput, match="cannot import"):
        load_features("no.such.module")


def test_encoder_matrix_equals_row_by_row_encoding() -> None:
    from offerloop.features import Encoder

    enc = Encoder.of(load_features())
    rows = [
        {"country": "us", "platform": "ios", "spend_total": 12.5, "level": 7},
        {"country": "zz", "spend_total": float("nan"), "level": True, "local_hour": "x"},
        {},
    ]
    import numpy as np

    np.testing.assert_allclose(enc.matrix(rows), np.array([enc.encode(r) for r in rows]))


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["us", "ios", "android", "x", ""]),
    st.lists(st.integers(), max_size=2),
)


_NUMBERS = st.one_of(
    st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True)
)
_KEYS = st.sampled_from(["country", "platform", "spend_total", "level", "local_hour"])


@given(
    st.one_of(
        # columns of numbers only (the fast path), and columns with anything in them
        st.lists(st.dictionaries(_KEYS, _NUMBERS, min_size=5), min_size=9, max_size=30),
        st.lists(st.dictionaries(_KEYS, _VALUES), min_size=9, max_size=30),
    )
)
@settings(max_examples=examples(60), deadline=None)
def test_encoder_batches_equal_row_by_row_encoding(rows: list[dict[str, object]]) -> None:
    import numpy as np

    from offerloop.features import Encoder

    enc = Encoder.of(load_features())
    expected = np.array([enc.encode(r) for r in rows])
    np.testing.assert_allclose(enc.matrix(rows), expected, rtol=1e-12, atol=0)
