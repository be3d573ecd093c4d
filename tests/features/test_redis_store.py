"""Online state in Redis: the same values as in memory, atomic per-player updates across
clients, one round trip per read, and a clear that touches only its own prefix."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offerloop.backends import EventRecord
from offerloop.features import OnlineFeatures, load_features
from offerloop.features._online import InMemoryOnlineStore, StateCodec
from offerloop.features._redis import RedisOnlineStore
from tests.conftest import REDIS_URL, unique_name
from tests.helpers import examples

pytestmark = pytest.mark.needs("redis")

FEATURES = load_features()
NOW = 1_800_000_000.0


@pytest.fixture
def store() -> Iterator[RedisOnlineStore]:
    s = RedisOnlineStore(REDIS_URL, f"{unique_name('t')}:", FEATURES)
    yield s
    s.clear()
    s.close()


def _events(n: int, player: str = "p1", start: float = NOW - 40 * 86400) -> list[EventRecord]:
    kinds = ["session_start", "purchase", "level_up", "player_profile"]
    out = []
    for i in range(n):
        kind = kinds[i % 4]
        props: dict[str, object] = {}
        if kind == "purchase":
            props = {"amount": float(1 + i % 7)}
        elif kind == "level_up":
            props = {"level": i}
        elif kind == "player_profile":
            props = {"country": ["us", "de", "br"][i % 3], "platform": "ios"}
        ts = start + i * 3600.0 * 7
        out.append(EventRecord(f"{player}-e{i}", player, kind, ts, props, ts))
    return out


event_lists = st.lists(
    st.tuples(
        st.sampled_from(["session_start", "purchase", "level_up", "player_profile"]),
        st.floats(0, 60 * 86400),
        st.floats(0.5, 50),
    ),
    max_size=40,
)


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=event_lists)
def test_redis_state_reads_exactly_like_memory(store: RedisOnlineStore, raw: list) -> None:  # type: ignore[type-arg]
    store.clear()
    events = []
    for i, (kind, offset, x) in enumerate(raw):
        props: dict[str, object] = {}
        if kind == "purchase":
            props = {"amount": x}
        elif kind == "level_up":
            props = {"level": int(x)}
        elif kind == "player_profile":
            props = {"country": "us" if x > 10 else "de"}
        ts = NOW - offset
        events.append(EventRecord(f"e{i}", "p1", kind, ts, props, ts))
    mem = OnlineFeatures(FEATURES, InMemoryOnlineStore())
    red = OnlineFeatures(FEATURES, store)
    for chunk in (events[: len(events) // 2], events[len(events) // 2 :]):
        mem.apply(chunk, NOW)
        red.apply(chunk, NOW)
    assert red.read("p1", NOW) == mem.read("p1", NOW)
    assert red.newest_received("p1") == mem.newest_received("p1")


def test_codec_round_trip_keeps_every_field() -> None:
    mem = OnlineFeatures(FEATURES, InMemoryOnlineStore())
    mem.apply(_events(60), NOW)
    state = mem.store.get("p1")
    assert state is not None
    codec = StateCodec(FEATURES)
    again = codec.decode(codec.encode(state))
    assert again == state


def test_concurrent_updates_of_one_player_are_never_lost(store: RedisOnlineStore) -> None:
    """Four clients (own connections) fold disjoint events of the same player at once."""
    events = _events(200)
    clients = [RedisOnlineStore(REDIS_URL, store.base[:-13], FEATURES) for _ in range(4)]
    assert all(c.base == store.base for c in clients)

    def work(i: int) -> None:
        online = OnlineFeatures(FEATURES, clients[i])
        for e in events[i::4]:
            online.apply([e], NOW)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    mem = OnlineFeatures(FEATURES, InMemoryOnlineStore())
    mem.apply(events, NOW)
    assert OnlineFeatures(FEATURES, store).read("p1", NOW) == mem.read("p1", NOW)


def test_clear_touches_only_its_own_prefix(store: RedisOnlineStore) -> None:
    other = RedisOnlineStore(REDIS_URL, f"{unique_name('o')}:", FEATURES)
    try:
        OnlineFeatures(FEATURES, store).apply(_events(5), NOW)
        OnlineFeatures(FEATURES, other).apply(_events(5), NOW)
        store.clear()
        assert store.get("p1") is None
        assert other.get("p1") is not None
    finally:
        other.clear()
        other.close()


def test_a_feature_read_is_one_round_trip(
    store: RedisOnlineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    OnlineFeatures(FEATURES, store).apply(_events(20), NOW)
    sent: list[tuple[object, ...]] = []
    real = store.reader.execute_command

    def counting(*args: object, **kwargs: object) -> object:
        sent.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.reader, "execute_command", counting)
    assert store.get("p1") is not None  # answered by the real server
    assert [a[0] for a in sent] == ["GET"]
