"""The backend conformance suite: every backend must pass it.

Subclass :class:`BackendConformance` in a test module and provide a ``backend`` fixture that
yields a fresh, empty backend::

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path): ...
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from offerloop._errors import Conflict
from offerloop.backends import (
    Backend,
    DecisionRecord,
    DeploymentRecord,
    EventRecord,
    ModelRecord,
    ShadowChoice,
    TransitionRecord,
)

__all__ = ["BackendConformance"]


def _ev(i: int, player: str = "p1", ts: float = 100.0, **props: object) -> EventRecord:
    kind = "purchase" if "amount" in props else "session_start"
    return EventRecord(f"e{i}", player, kind, ts + i, dict(props), received_at=ts)


def _decision(i: int, ts: float, campaign: str = "c") -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d{i}",
        ts=ts,
        player_id="p1",
        campaign=campaign,
        offer_id="a:b",
        model_version="random-1",
        mode="released",
        propensity=0.25,
        features={"level": 3.0, "country": "us"},
        context={"platform": "ios"},
        shadows=(ShadowChoice("rules-2", "a:c", 1.0, 0.0),),
        score_ms=0.125 * i,
        fallback="canary linear-3 failed: boom" if i % 2 else "",
    )


class BackendConformance:
    """Behaviour every backend shares; the semantics above the backend rely on it."""

    def test_append_events_is_idempotent_and_counts_new(self, backend: Backend) -> None:
        """``append_events`` skips ids stored already or repeated and returns only new events."""
        assert backend.append_events([_ev(1), _ev(2)]) == [_ev(1), _ev(2)]
        assert backend.append_events([_ev(2), _ev(3)]) == [_ev(3)]
        assert backend.append_events([_ev(4), _ev(4)]) == [_ev(4)]
        assert [e.event_id for e in backend.player_events("p1", 1e9)] == ["e1", "e2", "e3", "e4"]

    def test_iter_events_in_storage_order(self, backend: Backend) -> None:
        """``iter_events`` yields events in the order they were stored, not by timestamp."""
        backend.append_events([_ev(3), _ev(1)])
        backend.append_events([_ev(2, player="p2")])
        got = [e.event_id for e in backend.iter_events(batch=2)]
        assert got == ["e3", "e1", "e2"]

    def test_player_events_are_point_in_time_and_ordered(self, backend: Backend) -> None:
        """``player_events`` returns one player's events with ``ts <= until``, oldest first."""
        backend.append_events([_ev(3), _ev(1), _ev(2, player="p2")])
        got = backend.player_events("p1", until=101.0)
        assert [e.event_id for e in got] == ["e1"]
        assert [e.ts for e in backend.player_events("p1", 1e9)] == [101.0, 103.0]

    def test_event_lags_by_receipt_time(self, backend: Backend) -> None:
        """``event_lags``: (received_at, lag) of client events received in [start, end), the
        newest ``limit``, oldest first; offerloop's own offer_outcome events are left out."""
        from dataclasses import replace

        from offerloop.backends import OFFER_OUTCOME

        backend.append_events(
            [
                replace(_ev(1, ts=100.0), received_at=130.0),  # ts 101: 29 s late
                replace(_ev(2, ts=100.0), received_at=110.0),  # ts 102: 8 s late
                replace(_ev(3, ts=100.0), received_at=200.0),  # outside the range
                replace(_ev(4, ts=100.0), received_at=150.0, type=OFFER_OUTCOME),
                replace(_ev(5, ts=100.0), received_at=140.0),  # ts 105: 35 s late
            ]
        )
        assert backend.event_lags(110.0, 200.0) == [(110.0, 8.0), (130.0, 29.0), (140.0, 35.0)]
        assert backend.event_lags(110.0, 200.0, limit=2) == [(130.0, 29.0), (140.0, 35.0)]
        assert backend.event_lags(0.0, 100.0) == []

    def test_event_properties_round_trip(self, backend: Backend) -> None:
        """An event comes back equal: properties (non-ASCII too), decision id and amount."""
        e = _ev(1, amount=4.99, decision_id="d9", note="ünïcode")
        backend.append_events([e])
        (got,) = backend.player_events("p1", 1e9)
        assert got == e
        assert got.decision_id == "d9"
        assert got.amount == 4.99

    def test_purchases_for_decisions(self, backend: Backend) -> None:
        """``purchases_for`` returns the purchases naming any of the decisions, and only those."""
        backend.append_events(
            [_ev(1, amount=1.0, decision_id="d1"), _ev(2, amount=2.0, decision_id="d2"), _ev(3)]
        )
        got = backend.purchases_for(["d2", "d1", "d404"])
        assert sorted(e.event_id for e in got) == ["e1", "e2"]
        assert backend.purchases_for([]) == []

    def test_decisions_round_trip_and_range(self, backend: Backend) -> None:
        """Decisions round-trip, and are read and counted by campaign over ``[start, end)``."""
        assert backend.append_decisions([_decision(i, 10.0 * i) for i in range(5)]) == 5
        backend.append_decisions([_decision(9, 15.0, campaign="other")])
        assert backend.get_decisions(["d3", "nope", "d3"]) == {"d3": _decision(3, 30.0)}
        assert backend.get_decisions([]) == {}
        got = backend.decisions("c", 10.0, 40.0)
        assert [d.decision_id for d in got] == ["d1", "d2", "d3"]
        latest = backend.decisions("c", 0.0, 100.0, newest=2)
        assert [d.decision_id for d in latest] == ["d3", "d4"]
        assert backend.count_decisions("c", 10.0, 40.0) == 3
        assert backend.count_decisions("c", 0.0, 100.0) == 5
        assert backend.count_decisions("nope", 0.0, 100.0) == 0

    def test_shadows_scored_later_are_appended(self, backend: Backend) -> None:
        """``add_shadows`` appends to a decision's shadows and counts only the ids it knows."""
        backend.append_decisions([_decision(2, 1.0)])
        before = backend.decisions("c", 0.0, 10.0)  # read (and decoded) before the merge
        assert before[0].shadows == _decision(2, 1.0).shadows
        later = (ShadowChoice("gbt-9", "a:d", 0.9, 0.05),)
        assert backend.add_shadows({"d2": later, "nope": later}) == 1
        got = backend.get_decisions(["d2"]).get("d2")
        assert got is not None
        assert got.shadows == (*_decision(2, 1.0).shadows, *later)
        assert backend.decisions("c", 0.0, 10.0)[0].shadows == got.shadows

    def test_backfill_merges_without_touching_logged_values(self, backend: Backend) -> None:
        """``add_backfill`` merges values call after call and leaves logged features alone."""
        backend.append_decisions([_decision(1, 1.0)])
        assert backend.add_backfill({"d1": {"new": 1.5}, "nope": {"new": 2}}) == 1
        assert backend.add_backfill({"d1": {"other": "x"}}) == 1
        got = backend.get_decisions(["d1"]).get("d1")
        assert got is not None
        assert got.features == _decision(1, 1.0).features
        assert got.backfilled == {"new": 1.5, "other": "x"}
        assert got.training_row == {"new": 1.5, "other": "x", **got.features}

    def test_load_log_keeps_the_first_load_time(self, backend: Backend) -> None:
        """``record_load`` keeps a file's first load time; ``loads`` lists files in load order."""
        assert backend.record_load("s", "f1", 10.0) == 10.0
        assert backend.record_load("s", "f1", 20.0) == 10.0
        assert backend.record_load("s", "f2", 30.0) == 30.0
        assert backend.loads("s") == [("f1", 10.0), ("f2", 30.0)]
        assert backend.loads("other") == []

    def test_a_decision_id_is_stored_once(self, backend: Backend) -> None:
        """``append_decisions`` skips ids stored already (a replayed journal), counting new ones."""
        assert backend.append_decisions([_decision(1, 1.0)]) == 1
        # a replayed journal: the known id is skipped, the new one stored, in one call
        assert backend.append_decisions([_decision(1, 2.0), _decision(2, 3.0)]) == 1
        assert backend.get_decisions(["d1", "d2"]) == {
            "d1": _decision(1, 1.0),
            "d2": _decision(2, 3.0),
        }
        assert backend.append_decisions([]) == 0

    def test_models_and_numbers(self, backend: Backend) -> None:
        """Model numbers never repeat, a model round-trips, and storing it twice is a Conflict."""
        numbers = {backend.next_model_number() for _ in range(5)}
        assert len(numbers) == 5
        m = ModelRecord(
            "linear-1",
            "c",
            "linear",
            5.0,
            "abc.json",
            "abc",
            {"alpha": 1.0},
            {"rows": 10},
            {"ope": {"value": 1.0}},
        )
        backend.put_model(m)
        assert backend.get_model("linear-1") == m
        assert backend.get_model("x") is None
        assert backend.list_models() == [m]
        with pytest.raises(Conflict):
            backend.put_model(m)

    def test_model_numbers_are_unique_across_threads(self, backend: Backend) -> None:
        """``next_model_number`` never returns a number twice, even to concurrent threads."""
        got: list[int] = []
        lock = threading.Lock()

        def take() -> None:
            for _ in range(20):
                n = backend.next_model_number()
                with lock:
                    got.append(n)

        threads = [threading.Thread(target=take) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got)) == 80

    def test_caps_count_shows_within_their_windows(self, backend: Backend) -> None:
        """``take`` shows ``choose`` the player's entries since a time and records what it
        picks; nothing when it picks nothing (or raises); a key's entries are kept for the
        longest window named for it, and other keys' for theirs."""
        day = 3600.0 * 24

        def under(limits: dict[str, tuple[int, float]], now: float) -> Any:
            def choose(seen: list[tuple[str, float]]) -> list[tuple[str, float]]:
                for key, (limit, window) in limits.items():
                    if sum(1 for k, t in seen if k == key and t > now - window) >= limit:
                        return []
                return [(key, window) for key, (_, window) in limits.items()]

            return choose

        # 1 an hour and 2 a day under one key ("3 an hour, 10 a day" per campaign)
        twice = {"c|campaign": (1, 3600.0)}
        daily = {"c|campaign": (2, day)}

        def both(now: float) -> Any:
            a, b = under(twice, now), under(daily, now)
            return lambda seen: (
                a(seen) and b(seen) and [("c|campaign", 3600.0), ("c|campaign", day)]
            )

        got = [
            bool(backend.take("p1", t - day, both(t), t)) for t in (0.0, 1800.0, 7200.0, 14400.0)
        ]
        assert got == [True, False, True, False]  # the daily limit holds: the hourly key kept
        assert len(backend.shows("p1", -1.0)) == 2
        # another key with a short window does not forget these
        assert backend.take("p1", 0.0, under({"other": (5, 60.0)}, 20000.0), 20000.0)
        assert len([k for k, _ in backend.shows("p1", -1.0) if k == "c|campaign"]) == 2
        assert backend.take("p1", day, both(day + 7201.0), day + 7201.0)  # a day later: again

        def broken(seen: list[tuple[str, float]]) -> list[tuple[str, float]]:
            raise ValueError("a bug in the caller")

        with pytest.raises(ValueError, match="a bug"):
            backend.take("p2", 0.0, broken, 10.0)
        assert backend.shows("p2", -1.0) == []
        assert backend.take("p2", 0.0, lambda seen: [], 10.0) == []
        assert backend.shows("p2", -1.0) == []

    def test_caps_hold_under_concurrent_takes(self, backend: Backend) -> None:
        """Of many concurrent takes of a cap of 3, exactly 3 record, per player: what each
        ``choose`` sees cannot change before its pick is recorded."""
        won: list[tuple[str, bool]] = []
        lock = threading.Lock()

        def choose(seen: list[tuple[str, float]]) -> list[tuple[str, float]]:
            return [] if len(seen) >= 3 else [("c|campaign", 3600.0)]

        def take(player: str) -> None:
            ok = bool(backend.take(player, 5000.0 - 3600.0, choose, 5000.0))
            with lock:
                won.append((player, ok))

        threads = [threading.Thread(target=take, args=(f"p{i % 2}",)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(ok for p, ok in won if p == "p0") == 3
        assert sum(ok for p, ok in won if p == "p1") == 3
        assert len(backend.shows("p0", 0.0)) == 3

    def test_artifacts(self, backend: Backend) -> None:
        """An artifact is None until put, and putting it again replaces its bytes."""
        assert backend.get_artifact("a.json") is None
        backend.put_artifact("a.json", b"{}")
        backend.put_artifact("a.json", b'{"x":1}')
        assert backend.get_artifact("a.json") == b'{"x":1}'

    def test_deployments_swap_atomically_with_generation_check(self, backend: Backend) -> None:
        """``replace_deployments`` swaps and moves the generation; a stale one changes nothing."""
        g0 = backend.generation()
        d = [DeploymentRecord("c", "v1", "released", 1.0)]
        t = [TransitionRecord(1.0, "c", "release", "v1", "", "released", "why", "me")]
        assert backend.replace_deployments("c", g0, d, t)
        assert backend.generation() != g0
        assert backend.deployments("c") == d
        assert not backend.replace_deployments("c", g0, [], t)  # stale generation
        assert backend.deployments("c") == d
        assert backend.transitions("c") == t
        assert backend.deployments("other") == []
