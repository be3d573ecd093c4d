"""The embedded default backend: one SQLite database in WAL mode plus artifact files.

This module is the SQLite *dialect* (connections, migrations, errors, the few pieces of SQL
that differ); every query lives once in ``backends._sql``.

Why SQLite: several processes (``offerloop serve`` and CLI commands such as ``retrain``) can
use the same data directory at once (WAL: many readers, one writer at a time, writers wait on
``busy_timeout``), and a commit is durable before we acknowledge it. With
``durability = "full"`` every commit is fsynced (survives power loss); with ``"normal"`` a
crash of the process loses nothing, a power cut may lose the last commits.

Event sequence numbers are the ``rowid``: a write transaction holds the database's only write
lock from its first row to its commit, so rows become visible in ``rowid`` order and a gap is
never filled later (``transient_gaps = False``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from offerloop._errors import BackendUnavailable, Conflict, DataRejected, OfferloopError
from offerloop.backends._guard import remaining
from offerloop.backends._sql import Cursor, SqlBackend

__all__ = ["SQLiteBackend", "SQLiteDialect"]

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
    "ALTER TABLE events ADD COLUMN attribution TEXT;"
    "ALTER TABLE decisions ADD COLUMN price REAL NOT NULL DEFAULT 0;"
    "CREATE TABLE quarantine (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
    "record_key TEXT NOT NULL, payload TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL, "
    "UNIQUE (kind, record_key));"
    "CREATE TABLE pipeline_runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "campaign TEXT NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_received ON events (received_at)",
    "CREATE TABLE shows (player_id TEXT NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL);"
    "CREATE INDEX shows_player ON shows (player_id, ts)",
)


def _translate(exc: BaseException, path: Path, doing: str) -> BaseException:
    """SQLite's (and the sqlite3 module's) errors as offerloop's: a value it cannot store
    is rejected for good; anything else means the file cannot be used now."""
    if isinstance(exc, OfferloopError):
        return exc
    if isinstance(
        exc,
        sqlite3.IntegrityError
        | sqlite3.DataError
        | sqlite3.ProgrammingError
        | UnicodeError
        | OverflowError,
    ):
        return DataRejected(f"SQLite refused a value ({doing}): {exc}")
    if isinstance(exc, sqlite3.Error):
        return BackendUnavailable(f"{doing} in {path} failed: {exc}")
    return exc


class SQLiteDialect:
    name = "sqlite"
    seq = "rowid"
    transient_gaps = False

    def __init__(
        self,
        path: Path,
        durability: str = "full",
        busy_timeout: float = 30.0,
        migrate: bool = True,
    ) -> None:
        self.path = path
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self._busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not migrate and not path.exists():
            raise BackendUnavailable(f"{path} does not exist")
        try:
            if migrate:
                self._migrate()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot create the schema in {self.path}: {exc}") from exc

    def sql(self, query: str) -> str:
        return query

    def any_of(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        out = []
        for i in range(0, len(values), 500):
            chunk = list(values[i : i + 500])
            out.append((f"{column} IN ({','.join('?' * len(chunk))})", chunk))
        return out

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

    def schema_version(self) -> int:
        (row,) = self.read("PRAGMA user_version")
        return int(row[0])

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_ms / 1000,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._sync}")
                conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"cannot open {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        conn = self._conn()
        left = remaining()  # a request's deadline (serving._pools): wait no longer for the lock
        if left is not None:
            conn.execute(f"PRAGMA busy_timeout={max(1, min(self._busy_ms, int(left * 1000)))}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"{self.path} is not writable now: {exc}") from exc
        finally:
            if left is not None:
                conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        try:
            yield conn.cursor()
        except BaseException as exc:
            conn.execute("ROLLBACK")
            mapped = _translate(exc, self.path, "write")
            if mapped is exc:
                raise
            raise mapped from exc
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise BackendUnavailable(f"commit to {self.path} failed: {exc}") from exc

    def read(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(query, args).fetchall()
        except (sqlite3.Error, UnicodeError, OverflowError) as exc:
            raise _translate(exc, self.path, "read") from exc

    def insert_events(self, cur: Cursor, rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
        known: set[str] = set()
        ids = [r[0] for r in rows]
        for cond, chunk in self.any_of("event_id", ids):
            cur.execute(f"SELECT event_id FROM events WHERE {cond}", chunk)
            known.update(r[0] for r in cur.fetchall())
        new = [r for r in rows if r[0] not in known]
        if not new:
            return {}
        # we hold the only write lock: the new rows take the next rowids, in order
        cur.execute("SELECT COALESCE(MAX(rowid), 0) FROM events")
        top = int(cur.fetchone()[0])
        cur.executemany(
            "INSERT INTO events (event_id, player_id, type, ts, properties, received_at, "
            "decision_id, attribution) VALUES (?,?,?,?,?,?,?,?)",
            new,
        )
        return {r[0]: top + i for i, r in enumerate(new, start=1)}

    def serialize(self, cur: Cursor, key: str) -> None:
        """Nothing to do: a write transaction (BEGIN IMMEDIATE) holds the file's write lock."""

    @contextmanager
    def run_lock(self, name: str) -> Iterator[None]:
        """An OS file lock (``flock``) on ``<data_dir>/<name>.lock``: released with its
        process, so a crashed holder never leaves it stuck."""
        path = self.path.parent / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise Conflict(f"another process holds the {name} lock; try again later") from exc
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()


class FileArtifacts:
    """Artifacts as files under ``<data_dir>/artifacts/``: written to a temporary name,
    fsynced and renamed, so a reader sees a whole file or none."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def put_artifact(self, name: str, data: bytes) -> None:
        final = self.dir / name
        tmp = final.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get_artifact(self, name: str) -> bytes | None:
        try:
            return (self.dir / name).read_bytes()
        except FileNotFoundError:
            return None


class SQLiteBackend(SqlBackend):
    """Embedded backend over ``<data_dir>/offerloop.db`` and ``<data_dir>/artifacts/``."""

    def __init__(
        self, data_dir: str | Path, durability: str = "full", migrate: bool = True
    ) -> None:
        """``migrate=False``: open an existing database only (never create one)."""
        self.dir = Path(data_dir)
        artifacts = self.dir / "artifacts"
        try:
            if migrate:
                artifacts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"cannot create data directory {self.dir}: {exc}") from exc
        self.path = self.dir / "offerloop.db"
        self.dialect_sqlite = SQLiteDialect(self.path, durability, migrate=migrate)
        super().__init__("sqlite", self.dialect_sqlite, FileArtifacts(artifacts))

    def schema_version(self) -> int:
        return self.dialect_sqlite.schema_version()
