from __future__ import annotations

from pathlib import Path

from offerloop.backends import EventRecord
from offerloop.backends._sqlite import SQLiteBackend


def test_two_handles_on_one_directory_see_each_other(tmp_path: Path) -> None:
    """The service and a CLI command use the same data directory at the same time."""
    a, b = SQLiteBackend(tmp_path), SQLiteBackend(tmp_path)
    try:
        a.append_events([EventRecord("e1", "p", "session_start", 1.0)])
        assert [e.event_id for e in b.player_events("p", 10.0)] == ["e1"]
        assert b.append_events([EventRecord("e1", "p", "session_start", 1.0)]) == []
    finally:
        a.close()
        b.close()


def test_acknowledged_events_survive_reopening(tmp_path: Path) -> None:
    a = SQLiteBackend(tmp_path)
    a.append_events([EventRecord(f"e{i}", "p", "session_start", float(i)) for i in range(10)])
    # no close(): simulate a process that vanished after acknowledging
    b = SQLiteBackend(tmp_path)
    assert len(b.player_events("p", 100.0)) == 10
    a.close()
    b.close()
