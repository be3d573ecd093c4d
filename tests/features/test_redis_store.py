"""Online state in Redis, a single server and a Redis Cluster of three masters that the tests
start themselves: the same values as in memory, atomic per-player updates across clients, one
round trip per read, a clear that touches only its own prefix; on the cluster, a batch's
players spread over every master and the state survives a master killed with SIGKILL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offerloop._errors import BackendUnavailable
from offerloop.backends import EventRecord
from offerloop.features import OnlineFeatures, load_features
from offerloop.features._online import InMemoryOnlineStore, StateCodec
from offerloop.features._redis import RedisOnlineStore
from tests.clusters import RedisCluster, redis_cluster
from tests.conftest import REDIS_URL, unique_name
from tests.helpers import examples

pytestmark = pytest.mark.needs("redis")

FEATURES = load_features()
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as c:
        yield c


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "single":
        return REDIS_URL
    c: RedisCluster = request.getfixturevalue("cluster")
    return c.url


@pytest.fixture
def store(url: str) -> Iterator[RedisOnlineStore]:
    s = RedisOnlineStore(url, f"{unique_name('t')}:", FEATURES)
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


def test_concurrent_updates_of_one_player_are_never_lost(store: RedisOnlineStore, url: str) -> None:
    """Four clients (own connections) fold disjoint events of the same player at once."""
    events = _events(200)
    clients = [RedisOnlineStore(url, store.base[:-13], FEATURES) for _ in range(4)]
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


def test_clear_touches_only_its_own_prefix(store: RedisOnlineStore, url: str) -> None:
    other = RedisOnlineStore(url, f"{unique_name('o')}:", FEATURES)
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


def _players_events(players: int, per_player: int) -> list[EventRecord]:
    out = []
    for p in range(players):
        out += _events(per_player, player=f"p{p}")
    return out


def test_a_batch_spreads_over_every_master_and_reads_like_memory(cluster: RedisCluster) -> None:
    store = RedisOnlineStore(cluster.url, f"{unique_name('t')}:", FEATURES)
    try:
        assert store.cluster
        events = _players_events(120, 6)
        for i, e in enumerate(events):
            events[i] = e.with_seq(i + 1)
        mem = OnlineFeatures(FEATURES, InMemoryOnlineStore())
        red = OnlineFeatures(FEATURES, store)
        for k in range(0, len(events), 250):  # batches of many players, many buckets
            mem.apply(events[k : k + 250], NOW)
            red.apply(events[k : k + 250], NOW)
        for p in range(120):
            assert red.read(f"p{p}", NOW) == mem.read(f"p{p}", NOW)
        nodes = store.client.get_primaries()
        assert len(nodes) == 3
        per_node = [len(store.client.keys(f"{store.base}p:*", target_nodes=n)) for n in nodes]
        assert all(n > 0 for n in per_node), per_node  # the state is sharded
        assert sum(per_node) == 120
        assert store.folded(list(range(1, len(events) + 1))) == set(range(1, len(events) + 1))
    finally:
        store.clear()
        store.close()


def test_a_master_killed_and_restarted_keeps_every_acknowledged_fold(
    tmp_path: Path,
) -> None:
    """SIGKILL one of three masters: folds that touch its slots fail (the breaker opens, the
    caller is told, the log keeps the events to fold later); folds of other buckets go on.
    Started again from its append-only file, it has every fold it acknowledged, and folding
    the failed batch again gives exactly the state of folding everything once."""
    with redis_cluster(tmp_path) as c:
        store = RedisOnlineStore(c.url, f"{unique_name('t')}:", FEATURES, write_timeout=1.0)
        events = [e.with_seq(i + 1) for i, e in enumerate(_players_events(60, 4))]
        red = OnlineFeatures(FEATURES, store)
        red.apply(events[:120], NOW)
        victim = c.ports[2]
        c.kill(victim)
        with pytest.raises(BackendUnavailable):
            red.apply(events[120:], NOW)  # some of its players live on the dead master
        c.start_node(victim)
        c.wait_ok()
        assert store.probe()  # what the follower does: Redis answers, the breaker closes
        red.apply(events[120:], NOW)  # what the follower does with the log's events
        mem = OnlineFeatures(FEATURES, InMemoryOnlineStore())
        mem.apply(events, NOW)
        for p in range(60):
            assert red.read(f"p{p}", NOW) == mem.read(f"p{p}", NOW), p
        store.close()


def test_a_service_on_the_cluster_serves_what_it_ingests(
    cluster: RedisCluster, tmp_path: Path
) -> None:
    from offerloop import ManualClock, Offerloop, format_ts, load_settings
    from offerloop.events import EventIn

    prefix = f"{unique_name('s')}:"
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        redis_url=cluster.url,
        redis_prefix=prefix,
        online_read_timeout_ms=2000,
    )
    clock = ManualClock(NOW)
    system = Offerloop(settings, clock)
    try:
        system.bootstrap(actor="test")
        system.ingest(
            [
                EventIn(
                    event_id=f"b{i}",
                    player_id=f"p{i % 40}",
                    type="purchase",
                    ts=format_ts(NOW - 60),
                    properties={"amount": 2.0},
                )
                for i in range(200)
            ]
        )
        reading = system.player_features.online.read("p3", NOW)
        assert reading["purchases_total"] == 5
        assert reading["spend_total"] == 10.0
        decision = system.decide("p3", context={"local_hour": 9})
        assert decision.record.features["purchases_total"] == 5
        assert not decision.record.fallback  # decided on the cluster's state, not defaults
    finally:
        system.close()
        RedisOnlineStore(cluster.url, prefix, load_features()).clear()
