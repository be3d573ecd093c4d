"""Snapshots of the in-process online state: a restart reads the snapshot and the log after it
and serves exactly what a replay of the whole log would; a snapshot that cannot be trusted is
refused with the reason, and the state is rebuilt from the log."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offerloop import ManualClock, Offerloop, load_settings
from offerloop._clock import format_ts
from offerloop.events import EventIn
from offerloop.features import FeatureSet, aggregate
from offerloop.features._online import InMemoryOnlineStore, PlayerState, StateCodec
from offerloop.features._player import SNAPSHOT_FILE
from offerloop.features._snapshot import SnapshotUnusable, read_snapshot, write_snapshot
from tests.helpers import examples

T0 = 1_770_000_000.0
HOUR = 3600.0


def _events(rng: random.Random, n: int, start: float, tag: str) -> list[EventIn]:
    out = []
    for i in range(n):
        pid = f"p{rng.randrange(40)}"
        ts = format_ts(start + rng.uniform(-3 * HOUR, 0))
        kind = rng.choice(["session_start", "purchase", "level_up", "player_profile"])
        props: dict[str, object] = {}
        if kind == "purchase":
            props = {"amount": rng.choice([0.99, 4.99, 19.99])}
        elif kind == "level_up":
            props = {"level": rng.randrange(1, 60)}
        elif kind == "player_profile":
            props = {"country": rng.choice(["us", "de", "jp"]), "platform": "ios"}
        out.append(EventIn(event_id=f"{tag}{i}", player_id=pid, type=kind, ts=ts, properties=props))
    return out


def _reads(system: Offerloop, now: float) -> dict[str, dict[str, object]]:
    return {f"p{i}": system.player_features.of(f"p{i}", now) for i in range(40)}


def _open(data: Path, clock: ManualClock, **settings: object) -> Offerloop:
    return Offerloop(load_settings(env={}, data_dir=str(data), **settings), clock)


def test_a_restart_reads_the_snapshot_and_the_log_after_it(tmp_path: Path) -> None:
    rng, clock = random.Random(1), ManualClock(T0)
    data = tmp_path / "data"
    first = _open(data, clock)
    first.player_features.warm()
    first.ingest(_events(rng, 300, clock.now(), "a"))
    info = first.player_features.save_snapshot()
    assert info is not None
    assert info.players > 0
    clock.advance(2 * HOUR)
    first.ingest(_events(rng, 120, clock.now(), "b"))  # after the snapshot: only in the log
    clock.advance(HOUR)
    expected = _reads(first, clock.now())
    first.close()

    second = _open(data, clock)
    try:
        second.player_features.warm()
        pf = second.player_features
        assert pf.restored is not None, pf.restore_note
        assert pf.restored.players == info.players
        assert pf.rebuilt_events == 120  # the log's tail, not the whole log
        assert _reads(second, clock.now()) == expected
        assert (
            second.metrics.registry.get_sample_value(
                "offerloop_online_start_seconds", {"source": "snapshot"}
            )
            is not None
        )
    finally:
        second.close()
    replayed = _open(data, clock, snapshot_interval_seconds=0)  # snapshots off: the log
    try:
        replayed.player_features.warm()
        assert replayed.player_features.rebuilt_events == 420
        assert replayed.player_features.restored is None
        assert _reads(replayed, clock.now()) == expected  # the same as a full replay
    finally:
        replayed.close()


def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "flip":
        i = len(raw) // 3
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :])
    elif how == "cut":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "line":  # a well-formed file whose body is not player lines
        doc = json.loads(raw[:-1].rpartition(b"\n")[2])
        body = b"not a player line\n"
        doc.update(body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest())
        path.write_bytes(body + json.dumps(doc).encode() + b"\n")
    elif how == "version":
        body, _, trailer = raw[:-1].rpartition(b"\n")
        doc = json.loads(trailer)
        doc["version"] = 99
        path.write_bytes(body + b"\n" + json.dumps(doc).encode() + b"\n")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("flip", "does not match its checksum"),
        ("cut", "cut short"),
        ("version", "format version 99"),
        ("line", "a line cannot be read"),
    ],
)
def test_a_damaged_snapshot_is_refused_and_the_log_replayed(
    tmp_path: Path, how: str, reason: str
) -> None:
    rng, clock = random.Random(2), ManualClock(T0)
    data = tmp_path / "data"
    first = _open(data, clock)
    first.ingest(_events(rng, 200, clock.now(), "a"))
    first.player_features.warm()
    first.player_features.save_snapshot()
    expected = _reads(first, clock.now())
    first.close()
    _damage(data / SNAPSHOT_FILE, how)
    second = _open(data, clock)
    try:
        second.player_features.warm()
        pf = second.player_features
        assert pf.restored is None
        assert reason in pf.restore_note
        assert pf.rebuilt_events == 200
        assert _reads(second, clock.now()) == expected
        errors = second.metrics.registry.get_sample_value(
            "offerloop_errors_total", {"kind": "snapshot"}
        )
        assert errors == 1
    finally:
        second.close()


def test_a_snapshot_of_other_definitions_or_of_another_log_is_refused(tmp_path: Path) -> None:
    rng, clock = random.Random(3), ManualClock(T0)
    data = tmp_path / "data"
    system = _open(data, clock)
    system.ingest(_events(rng, 100, clock.now(), "a"))
    system.player_features.warm()
    system.player_features.save_snapshot()
    path = data / SNAPSHOT_FILE
    last = system.backend.last_event_seq()
    read_snapshot(path, system.features.digest(), last)  # usable as it is
    other = FeatureSet([aggregate("n", "purchase", "count")])
    with pytest.raises(SnapshotUnusable, match="other feature definitions"):
        read_snapshot(path, other.digest(), last)
    system.close()
    fresh = tmp_path / "fresh"  # a new, empty log with the old snapshot copied in
    fresh.mkdir()
    (fresh / SNAPSHOT_FILE).write_bytes(path.read_bytes())
    again = _open(fresh, clock)
    try:
        again.player_features.warm()
        assert "but the log ends at 0" in again.player_features.restore_note
        assert again.player_features.restored is None
    finally:
        again.close()


def test_a_failed_write_leaves_the_previous_snapshot_whole(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    data = tmp_path / "data"
    system = _open(data, clock)
    try:
        system.ingest(_events(random.Random(4), 100, clock.now(), "a"))
        system.player_features.warm()
        system.player_features.save_snapshot()
        path = data / SNAPSHOT_FILE
        before = path.read_bytes()
        store = system.player_features.online.store
        assert isinstance(store, InMemoryOnlineStore)
        bad = InMemoryOnlineStore()  # a state the codec cannot write, among good ones
        states, marks, cursor = store.snapshot()
        broken = PlayerState(newest_received=object())  # type: ignore[arg-type]
        bad.restore({**states, "zz": broken}, marks, cursor, StateCodec(system.features))
        with pytest.raises(TypeError):
            write_snapshot(bad, StateCodec(system.features), system.features.digest(), path, 0.0)
        assert path.read_bytes() == before
        assert sorted(p.name for p in data.iterdir() if p.name.endswith(".tmp")) == []
    finally:
        system.close()


def test_a_service_writes_a_snapshot_as_it_stops_and_on_its_schedule(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    data = tmp_path / "data"
    system = _open(data, clock, snapshot_interval_seconds=3600)
    system.player_features.warm()
    system.ingest(_events(random.Random(5), 50, clock.now(), "a"))
    system.start_background()
    assert any(t.name == "offerloop-snapshot" for t in system._background)
    system.close()  # a service stopping: the last snapshot
    assert (data / SNAPSHOT_FILE).exists()
    again = _open(data, clock)
    try:
        again.player_features.warm()
        assert again.player_features.restored is not None
        assert again.player_features.rebuilt_events == 0
    finally:
        again.close()
    off = tmp_path / "off"
    system = _open(off, clock, snapshot_interval_seconds=0)
    system.player_features.warm()
    system.start_background()
    assert not any(t.name == "offerloop-snapshot" for t in system._background)
    system.close()
    assert not (off / SNAPSHOT_FILE).exists()


def test_restored_states_are_decoded_on_first_use_and_written_back_as_read(
    tmp_path: Path,
) -> None:
    """A restart decodes no player until one is read or folded; a snapshot written before
    then carries the undecoded states over byte for byte."""
    clock = ManualClock(T0)
    data = tmp_path / "data"
    first = _open(data, clock)
    first.player_features.warm()
    first.ingest(_events(random.Random(6), 200, clock.now(), "a"))
    first.player_features.save_snapshot()
    expected = _reads(first, clock.now())
    first.close()
    before = (data / SNAPSHOT_FILE).read_bytes()
    second = _open(data, clock)
    try:
        second.player_features.warm()
        store = second.player_features.online.store
        assert isinstance(store, InMemoryOnlineStore)
        states, _, _ = store.snapshot()
        assert states
        assert all(isinstance(v, bytes) for v in states.values())
        second.player_features.save_snapshot()  # nothing decoded: the same states
        after = (data / SNAPSHOT_FILE).read_bytes()
        assert after.rpartition(b"\n{")[0] == before.rpartition(b"\n{")[0]
        assert _reads(second, clock.now()) == expected
        states, _, _ = store.snapshot()
        assert not any(isinstance(v, bytes) for v in states.values())  # read: decoded
    finally:
        second.close()


def test_no_snapshot_yet_is_said(tmp_path: Path) -> None:
    system = _open(tmp_path / "data", ManualClock(T0))
    try:
        system.player_features.warm()
        assert system.player_features.restore_note == "no snapshot yet"
        assert system.player_features.restored is None
    finally:
        system.close()


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 10_000), before=st.integers(0, 150), after=st.integers(0, 80))
def test_snapshot_and_tail_equal_a_full_replay(
    tmp_path_factory: pytest.TempPathFactory, seed: int, before: int, after: int
) -> None:
    """Wherever the snapshot falls (nothing before it, nothing after it, duplicates of
    earlier events after it), the restored state reads what the replay of the log reads."""
    rng, clock = random.Random(seed), ManualClock(T0)
    data = tmp_path_factory.mktemp("snap") / "data"
    system = _open(data, clock)
    system.player_features.warm()
    early = _events(rng, before, clock.now(), "a")
    system.ingest(early)
    system.player_features.save_snapshot()
    clock.advance(rng.uniform(0, 30 * HOUR))
    system.ingest(_events(rng, after, clock.now(), "b") + early[: rng.randrange(0, 5)])
    system.close()
    restored = _open(data, clock)
    replayed = _open(data, clock, snapshot_interval_seconds=0)
    try:
        restored.player_features.warm()
        assert restored.player_features.restored is not None
        replayed.player_features.warm()
        assert replayed.player_features.restored is None
        assert _reads(restored, clock.now()) == _reads(replayed, clock.now())
    finally:
        restored.close()
        replayed.close()


def test_snapshots_written_at_once_by_the_schedule_and_the_stop_stay_whole(
    tmp_path: Path,
) -> None:
    """The scheduled snapshot may still be writing when the service stops and writes its last
    one: the writes take turns, and the file is always a whole snapshot."""
    import threading

    clock = ManualClock(T0)
    data = tmp_path / "data"
    system = _open(data, clock)
    try:
        system.player_features.warm()
        system.ingest(_events(random.Random(7), 300, clock.now(), "a"))
        errors: list[BaseException] = []

        def write() -> None:
            try:
                for _ in range(5):
                    system.player_features.save_snapshot()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        read_snapshot(data / SNAPSHOT_FILE, system.features.digest(), 10**9)
        assert [p.name for p in data.iterdir() if p.name.endswith(".tmp")] == []
    finally:
        system.close()
