"""The embedded default backend: one SQLite database in WAL mode plus artifact files.

Why SQLite: several processes (``offerloop serve`` and CLI commands such as ``retrain``) can
use the same data directory at once (WAL: many readers, one writer at a time, writers wait on
``busy_timeout``), and a commit is durable before we acknowledge it. With
``durability = "full"`` every commit is fsynced (survives power loss); with ``"normal"`` a
crash of the process loses nothing, a power cut may lose the last commits.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from offerloop._errors import BackendUnavailable, Conflict
from offerloop.backends._records import (
    DecisionRecord,
    DeploymentRecord,
    EventRecord,
    ModelRecord,
    ShadowChoice,
    TransitionRecord,
)
from offerloop.backends._rows import (
    decision_from_row,
    decision_row,
    dumps,
    model_from_row,
    model_row,
    transition_row,
)

__all__ = ["SQLiteBackend"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    player_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    properties TEXT NOT NULL,
    received_at REAL NOT NULL,
    decision_id TEXT
);
CREATE INDEX IF NOT EXISTS events_player_ts ON events (player_id, ts);
CREATE INDEX IF NOT EXISTS events_decision ON events (decision_id) WHERE decision_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    player_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    mode TEXT NOT NULL,
    propensity REAL NOT NULL,
    features TEXT NOT NULL,
    context TEXT NOT NULL,
    shadows TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_campaign_ts ON decisions (campaign, ts);
CREATE TABLE IF NOT EXISTS models (
    version TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    artifact TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    params TEXT NOT NULL,
    lineage TEXT NOT NULL,
    metrics TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    campaign TEXT NOT NULL,
    version TEXT NOT NULL,
    mode TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (campaign, version)
);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    campaign TEXT NOT NULL,
    action TEXT NOT NULL,
    version TEXT NOT NULL,
    from_mode TEXT NOT NULL,
    to_mode TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('generation', 0), ('model_number', 0);
"""
# Each entry migrates the schema one version up; never edit one that has shipped.
_MIGRATIONS = (
    _SCHEMA,
    "ALTER TABLE decisions ADD COLUMN backfilled TEXT NOT NULL DEFAULT '{}'",
    "CREATE TABLE batch_loads (seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, "
    "file_key TEXT NOT NULL, loaded_at REAL NOT NULL, UNIQUE (source, file_key))",
    "ALTER TABLE deployments ADD COLUMN share REAL NOT NULL DEFAULT 0",
    "ALTER TABLE decisions ADD COLUMN score_ms REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE decisions ADD COLUMN fallback TEXT NOT NULL DEFAULT ''",
)


class SQLiteBackend:
    """Embedded backend over ``<data_dir>/offerloop.db`` and ``<data_dir>/artifacts/``."""

    name = "sqlite"

    def __init__(self, data_dir: str | Path, durability: str = "full") -> None:
        self.dir = Path(data_dir)
        self.artifacts = self.dir / "artifacts"
        try:
            self.artifacts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create data directory {self.dir}: {exc}") from exc
        self.path = self.dir / "offerloop.db"
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._migrate()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot create the schema in {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        """Apply schema migrations newer than the file's ``user_version``, idempotently."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            for number, script in enumerate(_MIGRATIONS, start=1):
                if number > version:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._sync}")
                conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"cannot open {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.path} is not writable now: {exc}") from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise BackendUnavailable(f"commit to {self.path} failed: {exc}") from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"read from {self.path} failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()

    # -- events --------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        with self._write() as c:
            known: set[str] = set()
            ids = list(dict.fromkeys(e.event_id for e in events))
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = c.execute(f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk)
                known.update(r[0] for r in rows)
            new: list[EventRecord] = []
            for e in events:
                if e.event_id not in known:
                    known.add(e.event_id)
                    new.append(e)
            c.executemany(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        e.event_id,
                        e.player_id,
                        e.type,
                        e.ts,
                        dumps(dict(e.properties)),
                        e.received_at,
                        e.decision_id,
                    )
                    for e in new
                ],
            )
            return new

    def iter_events(self, batch: int = 10_000) -> Iterator[EventRecord]:
        last = 0
        while True:
            rows = self._read(
                "SELECT rowid, event_id, player_id, type, ts, properties, received_at FROM events "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, batch),
            )
            if not rows:
                return
            last = rows[-1][0]
            for r in rows:
                yield self._event(r[1:])

    @staticmethod
    def _event(row: Sequence[Any]) -> EventRecord:
        return EventRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])

    def player_events(self, player_id: str, until: float) -> list[EventRecord]:
        rows = self._read(
            "SELECT event_id, player_id, type, ts, properties, received_at FROM events "
            "WHERE player_id = ? AND ts <= ? ORDER BY ts, event_id",
            (player_id, until),
        )
        return [self._event(r) for r in rows]

    def purchases_for(self, decision_ids: Sequence[str]) -> list[EventRecord]:
        out: list[EventRecord] = []
        ids = list(dict.fromkeys(decision_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                "SELECT event_id, player_id, type, ts, properties, received_at FROM events "
                f"WHERE decision_id IN ({marks}) AND type = 'purchase' ORDER BY ts",
                chunk,
            )
            out.extend(self._event(r) for r in rows)
        return out

    # -- decisions -----------------------------------------------------------------------
    def append_decisions(
        self, decisions: Sequence[DecisionRecord], rows: Sequence[tuple[Any, ...]] = ()
    ) -> int:
        if not decisions:
            return 0
        with self._write() as c:
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows or [decision_row(d) for d in decisions],
            )
            return c.total_changes - before

    _decision = staticmethod(decision_from_row)

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        out: dict[str, DecisionRecord] = {}
        ids = list(dict.fromkeys(decision_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._read(f"SELECT * FROM decisions WHERE decision_id IN ({marks})", chunk):
                out[r[0]] = self._decision(r)
        return out

    def decisions(
        self, campaign: str, start: float, end: float, newest: int | None = None
    ) -> list[DecisionRecord]:
        if newest is not None:
            rows = self._read(
                "SELECT * FROM decisions WHERE campaign = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts DESC, decision_id DESC LIMIT ?",
                (campaign, start, end, newest),
            )[::-1]
        else:
            rows = self._read(
                "SELECT * FROM decisions WHERE campaign = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts, decision_id",
                (campaign, start, end),
            )
        return [self._decision(r) for r in rows]

    def add_shadows(self, values: Mapping[str, Sequence[ShadowChoice]]) -> int:
        changed = 0
        with self._write() as c:
            for did, extra in values.items():
                row = c.execute(
                    "SELECT shadows FROM decisions WHERE decision_id = ?", (did,)
                ).fetchone()
                if row is None:
                    continue
                merged = [*json.loads(row[0]), *(s.__dict__ for s in extra)]
                c.execute(
                    "UPDATE decisions SET shadows = ? WHERE decision_id = ?",
                    (dumps(merged), did),
                )
                changed += 1
        return changed

    def add_backfill(self, values: Mapping[str, Mapping[str, Any]]) -> int:
        changed = 0
        with self._write() as c:
            for did, vals in values.items():
                row = c.execute(
                    "SELECT backfilled FROM decisions WHERE decision_id = ?", (did,)
                ).fetchone()
                if row is None:
                    continue
                merged = {**json.loads(row[0]), **vals}
                c.execute(
                    "UPDATE decisions SET backfilled = ? WHERE decision_id = ?",
                    (dumps(merged), did),
                )
                changed += 1
        return changed

    # -- models and artifacts ------------------------------------------------------------
    def next_model_number(self) -> int:
        with self._write() as c:
            c.execute("UPDATE counters SET value = value + 1 WHERE name = 'model_number'")
            (n,) = c.execute("SELECT value FROM counters WHERE name = 'model_number'").fetchone()
            return int(n)

    def put_model(self, model: ModelRecord) -> None:
        m = model
        with self._write() as c:
            try:
                c.execute(
                    "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?)",
                    model_row(m),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"model version {m.version} already exists") from exc

    _model = staticmethod(model_from_row)

    def get_model(self, version: str) -> ModelRecord | None:
        rows = self._read("SELECT * FROM models WHERE version = ?", (version,))
        return self._model(rows[0]) if rows else None

    def list_models(self) -> list[ModelRecord]:
        return [self._model(r) for r in self._read("SELECT * FROM models ORDER BY created_at")]

    def put_artifact(self, name: str, data: bytes) -> None:
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad artifact name {name!r}")
        final = self.artifacts / name
        tmp = final.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.artifacts, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get_artifact(self, name: str) -> bytes | None:
        try:
            return (self.artifacts / name).read_bytes()
        except FileNotFoundError:
            return None

    # -- deployments ---------------------------------------------------------------------
    def deployments(self, campaign: str) -> list[DeploymentRecord]:
        rows = self._read(
            "SELECT campaign, version, mode, since, share FROM deployments WHERE campaign = ? "
            "ORDER BY since, version",
            (campaign,),
        )
        return [DeploymentRecord(*r) for r in rows]

    def replace_deployments(
        self,
        campaign: str,
        expected_generation: int,
        deployments: Sequence[DeploymentRecord],
        transitions: Sequence[TransitionRecord],
    ) -> bool:
        with self._write() as c:
            (gen,) = c.execute("SELECT value FROM counters WHERE name = 'generation'").fetchone()
            if gen != expected_generation:
                return False
            c.execute("DELETE FROM deployments WHERE campaign = ?", (campaign,))
            c.executemany(
                "INSERT INTO deployments (campaign, version, mode, since, share) "
                "VALUES (?,?,?,?,?)",
                [(d.campaign, d.version, d.mode, d.since, d.share) for d in deployments],
            )
            c.executemany(
                "INSERT INTO transitions (ts, campaign, action, version, from_mode, to_mode, "
                "reason, actor) VALUES (?,?,?,?,?,?,?,?)",
                [transition_row(t) for t in transitions],
            )
            c.execute("UPDATE counters SET value = value + 1 WHERE name = 'generation'")
            return True

    def transitions(self, campaign: str) -> list[TransitionRecord]:
        rows = self._read(
            "SELECT ts, campaign, action, version, from_mode, to_mode, reason, actor "
            "FROM transitions WHERE campaign = ? ORDER BY seq",
            (campaign,),
        )
        return [TransitionRecord(*r) for r in rows]

    def record_load(self, source: str, file_key: str, loaded_at: float) -> float:
        with self._write() as c:
            c.execute(
                "INSERT OR IGNORE INTO batch_loads (source, file_key, loaded_at) VALUES (?,?,?)",
                (source, file_key, loaded_at),
            )
            (got,) = c.execute(
                "SELECT loaded_at FROM batch_loads WHERE source = ? AND file_key = ?",
                (source, file_key),
            ).fetchone()
            return float(got)

    def loads(self, source: str) -> list[tuple[str, float]]:
        rows = self._read(
            "SELECT file_key, loaded_at FROM batch_loads WHERE source = ? ORDER BY seq", (source,)
        )
        return [(r[0], float(r[1])) for r in rows]

    def generation(self) -> int:
        (row,) = self._read("SELECT value FROM counters WHERE name = 'generation'")
        return int(row[0])
