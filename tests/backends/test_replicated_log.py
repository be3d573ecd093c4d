"""The replicated log (NATS JetStream, setting ``log_url``) as the system of record: events
and decisions are acknowledged once the log stored them, committed to the database by the
consumers exactly once, and nothing acknowledged is lost or duplicated when one node of a
three-node cluster is killed with SIGKILL under load."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offerloop import ManualClock, Offerloop, Settings, format_ts, load_settings
from offerloop._errors import BackendUnavailable
from offerloop.backends._nats import NatsLog
from offerloop.events import EventIn
from tests.clusters import nats_cluster
from tests.conftest import NATS_URL, T0, unique_name


def _settings(tmp_path: Path, url: str, stream: str, replicas: int = 1) -> Settings:
    return load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        log_url=url,
        log_stream=stream,
        log_replicas=replicas,
        decision_seed=1,
    )


def _batch(tag: str, n: int, players: int = 20) -> list[EventIn]:
    return [
        EventIn(
            event_id=f"{tag}-{i}",
            player_id=f"p{i % players}",
            type="purchase",
            ts=format_ts(T0 - 60),
            properties={"amount": 1.0},
        )
        for i in range(n)
    ]


@pytest.fixture
def stream() -> Iterator[str]:
    name = unique_name("t").replace("_", "-")
    yield name
    log = NatsLog(NATS_URL, name)
    log.drop()
    log.close()


@pytest.mark.needs("nats")
def test_events_and_decisions_are_acknowledged_by_the_log_and_stored_once(
    tmp_path: Path, stream: str
) -> None:
    system = Offerloop(_settings(tmp_path, NATS_URL, stream), ManualClock(T0))
    try:
        system.bootstrap(actor="test")
        first = system.ingest(_batch("a", 30))
        assert (first.durable, first.accepted, first.online) == ("log", 30, "deferred")
        again = system.ingest(_batch("a", 30))  # a client's retry, before the consumer ran
        assert again.duplicates == 30
        decision = system.decide("p1", context={"local_hour": 9})
        system.commit_journals()  # the consumers commit what the log holds
        system.ingest(_batch("a", 30))  # a retry after the commit: the log keeps one copy
        system.commit_journals()
        # ... and nothing waits for it: the log will not deliver it again (before, such a
        # retry stayed pending here for minutes, and the kill test timed out on it)
        assert system.event_journal.backlog() == 0
        ids = [e.event_id for e in system.backend.iter_events() if e.type == "purchase"]
        assert sorted(ids) == sorted(f"a-{i}" for i in range(30))
        assert decision.record.decision_id in system.backend.get_decisions(
            [decision.record.decision_id]
        )
        assert system.replicated is not None
        log = system.replicated
        assert isinstance(log, NatsLog)
        assert log.messages("event") == 31  # 30 purchases and the decision's offer_outcome
        assert log.messages("decision") == 1
        system.player_features.follow()  # the online state follows the database
        assert system.player_features.online.read("p1", T0)["purchases_total"] == 2
    finally:
        system.close()


def _open(settings: Settings, deadline: float) -> Offerloop:
    """The cluster elects its JetStream leader in its own time: retry until it can create
    the replicated stream."""
    while True:
        try:
            return Offerloop(settings, ManualClock(T0))
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
def test_a_node_killed_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with nats_cluster(tmp_path / "nats") as cluster:
        settings = _settings(tmp_path, cluster.url, "LOADTEST", replicas=3)
        system = _open(settings, time.monotonic() + 120)
        try:
            system.bootstrap(actor="test")
            acked_events: set[str] = set()
            acked_decisions: set[str] = set()
            failures = {"events": 0, "decisions": 0}
            lock = threading.Lock()
            stop = threading.Event()

            def send_events(worker: int) -> None:
                k = 0
                while not stop.is_set():
                    batch = _batch(f"w{worker}-b{k}", 25, players=50)
                    while not stop.is_set():  # a client retries a batch until it is acknowledged
                        try:
                            system.ingest(batch)
                        except BackendUnavailable:
                            with lock:
                                failures["events"] += 1
                            time.sleep(0.05)
                            continue
                        with lock:
                            acked_events.update(e.event_id for e in batch)
                        break
                    k += 1

            def decide(worker: int) -> None:
                k = 0
                while not stop.is_set():
                    try:
                        d = system.decide(f"p{(worker * 7 + k) % 50}", context={"local_hour": 9})
                        with lock:
                            acked_decisions.add(d.record.decision_id)
                    except BackendUnavailable:
                        with lock:
                            failures["decisions"] += 1
                        time.sleep(0.05)
                    k += 1

            threads = [threading.Thread(target=send_events, args=(i,)) for i in range(3)]
            threads += [threading.Thread(target=decide, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            try:
                _until(lambda: len(acked_events) >= 500, "load before the kill")
                log = system.replicated
                assert isinstance(log, NatsLog)
                leader = log.leader()
                assert leader.startswith("node")
                cluster.kill(int(leader[4:]))  # SIGKILL the node leading the stream
                before = len(acked_events)
                _until(lambda: len(acked_events) >= before + 500, "load after the kill")
            finally:
                stop.set()
                for t in threads:
                    t.join(120)
            _until(lambda: _drained(system), "the consumers to commit everything")
            # a message no caller was told is stored (a decision's offer_outcome whose append was
            # refused while failing over, though the log kept it) is not among what _drained
            # waits for: give the consumers time to commit it too before counting the stream
            _settle(lambda: _drained(system) and log.messages("event") == _all_events(system))
            stored = [e.event_id for e in system.backend.iter_events() if e.type == "purchase"]
            assert len(stored) == len(set(stored))
            assert set(stored) == acked_events  # every acknowledged event, nothing else
            found = system.backend.get_decisions(sorted(acked_decisions))
            assert set(found) == acked_decisions
            # retries after the kill did not store any event twice in the log either
            assert log.messages("event") == len(acked_events) + _outcomes(system)
            print(
                f"acknowledged {len(acked_events)} events, {len(acked_decisions)} decisions; "
                f"refused while failing over: {failures}"
            )
        finally:
            system.close()  # also when an assertion failed: no thread outlives the test


def _drained(system: Offerloop) -> bool:
    try:
        system.commit_journals()
    except BackendUnavailable:
        return False
    return system.journal.backlog() == 0 and system.event_journal.backlog() == 0


def _all_events(system: Offerloop) -> int:
    return sum(1 for _ in system.backend.iter_events())


def _settle(ok: object, timeout: float = 120.0) -> None:
    """Wait until ``ok()`` or ``timeout``, whichever comes first (the assertions follow)."""
    deadline = time.monotonic() + timeout
    while not ok() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def _outcomes(system: Offerloop) -> int:
    return sum(1 for e in system.backend.iter_events() if e.type == "offer_outcome")


def _until(ok: object, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
