"""A local, durable spool for decision records the database cannot take right now.

When the shared database is down, a decision is still answered: its record is committed
(fsynced) to ``<data_dir>/spool.db`` before the answer and moved to the database once it is
back (oldest first, idempotently: a record the database already has is simply dropped from
the spool). An acknowledged decision is therefore always on disk somewhere: in the database,
or in this process's spool until it drains.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path

from offerloop._errors import BackendUnavailable, Conflict
from offerloop.backends._protocols import DecisionLog
from offerloop.backends._records import DecisionRecord, ShadowChoice

__all__ = ["DecisionSpool"]


class DecisionSpool:
    def __init__(self, directory: str | Path) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "spool.db"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "decision_id TEXT UNIQUE NOT NULL, record TEXT NOT NULL)"
        )

    def append(self, record: DecisionRecord) -> None:
        doc = asdict(record)
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR IGNORE INTO spool (decision_id, record) VALUES (?, ?)",
                    (record.decision_id, json.dumps(doc)),
                )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"the database is down and the spool failed: {exc}") from exc

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT count(*) FROM spool").fetchone()
        return int(n)

    def drain(self, log: DecisionLog, limit: int = 500) -> int:
        """Move up to ``limit`` spooled decisions into ``log``; returns how many moved.
        Raises BackendUnavailable (leaving the rest spooled) if the database is still down."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, record FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        moved = 0
        for seq, text in rows:
            doc = json.loads(text)
            doc["shadows"] = tuple(ShadowChoice(**s) for s in doc["shadows"])
            with contextlib.suppress(Conflict):  # already stored: an earlier drain was cut short
                log.append_decision(DecisionRecord(**doc))
            with self._lock:
                self._conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            moved += 1
        return moved

    def close(self) -> None:
        with self._lock:
            self._conn.close()
