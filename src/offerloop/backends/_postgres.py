"""The PostgreSQL backend: every log, the registry, deployments and artifacts in one schema.

This module is the PostgreSQL *dialect* (connections, migrations, errors, locks, the few
pieces of SQL that differ); every query lives once in ``backends._sql``.

Selected by ``database_url = "postgresql://..."`` (env ``OFFERLOOP_DATABASE_URL``). Several
service processes share it. Connections come from a pool (psycopg 3); each call is one
transaction. Migrations are numbered, recorded in ``schema_migrations`` and applied at start
under an advisory lock, so processes starting together apply each exactly once.

Events are inserted in one multi-row statement per batch (``unnest`` of arrays) that skips
ids already stored and ends with ``ON CONFLICT (event_id) DO NOTHING RETURNING`` for two
processes inserting the same retry at once. Artifacts live in a ``bytea`` table, so every
process (on any machine) reads the same bytes; their sha256 is still checked on load above.

No call waits for ever (``backends._guard``): the server cancels a statement after
``timeout`` seconds (``statement_timeout``), the client cuts a connection whose answer has
not come a second after that (a server or network that stalls), waiting for a pooled
connection is bounded, and after a failure the breaker makes calls fail at once for a
second instead of each waiting for its own timeout.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from offerloop._errors import BackendUnavailable, Conflict, DataRejected, InvalidInput
from offerloop.backends._guard import Breaker, Deadlines, remaining
from offerloop.backends._sql import Cursor, SqlBackend

__all__ = ["PostgresBackend", "PostgresDialect"]

# Each entry migrates the schema one version up; never edit one that has shipped.
_MIGRATIONS = (
    """
    CREATE TABLE events (
        seq BIGSERIAL UNIQUE,
        event_id TEXT PRIMARY KEY,
        player_id TEXT NOT NULL,
        type TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        properties TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        decision_id TEXT
    );
    CREATE INDEX events_player_ts ON events (player_id, ts);
    CREATE INDEX events_decision ON events (decision_id) WHERE decision_id IS NOT NULL;
    CREATE TABLE decisions (
        decision_id TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        player_id TEXT NOT NULL,
        campaign TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        mode TEXT NOT NULL,
        propensity DOUBLE PRECISION NOT NULL,
        features TEXT NOT NULL,
        context TEXT NOT NULL,
        shadows TEXT NOT NULL,
        backfilled TEXT NOT NULL DEFAULT '{}',
        score_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        fallback TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX decisions_campaign_ts ON decisions (campaign, ts);
    CREATE TABLE models (
        version TEXT PRIMARY KEY,
        campaign TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        artifact TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        params TEXT NOT NULL,
        lineage TEXT NOT NULL,
        metrics TEXT NOT NULL
    );
    CREATE TABLE artifacts (name TEXT PRIMARY KEY, data BYTEA NOT NULL);
    CREATE TABLE deployments (
        campaign TEXT NOT NULL,
        version TEXT NOT NULL,
        mode TEXT NOT NULL,
        since DOUBLE PRECISION NOT NULL,
        share DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign, version)
    );
    CREATE TABLE transitions (
        seq BIGSERIAL PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        campaign TEXT NOT NULL,
        action TEXT NOT NULL,
        version TEXT NOT NULL,
        from_mode TEXT NOT NULL,
        to_mode TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX transitions_campaign ON transitions (campaign, seq);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO counters VALUES ('generation', 0), ('model_number', 0);
    CREATE TABLE batch_loads (
        seq BIGSERIAL PRIMARY KEY,
        source TEXT NOT NULL,
        file_key TEXT NOT NULL,
        loaded_at DOUBLE PRECISION NOT NULL,
        UNIQUE (source, file_key)
    );
    """,
    """
    ALTER TABLE events ADD COLUMN attribution TEXT;
    ALTER TABLE decisions ADD COLUMN price DOUBLE PRECISION NOT NULL DEFAULT 0;
    CREATE TABLE quarantine (
        seq BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL,
        record_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        reason TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        UNIQUE (kind, record_key)
    );
    CREATE TABLE pipeline_runs (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        campaign TEXT NOT NULL,
        status TEXT NOT NULL,
        doc TEXT NOT NULL
    );
    """,
    "CREATE INDEX IF NOT EXISTS events_received ON events (received_at);",
    """
    CREATE TABLE shows (
        player_id TEXT NOT NULL,
        key TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX shows_player ON shows (player_id, ts);
    """,
)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PLACEHOLDER = re.compile(r"\?")
_INSERT_EVENTS = (
    "INSERT INTO events (event_id, player_id, type, ts, properties, received_at, decision_id, "
    "attribution) SELECT a, b, c, d, e, f, g, h FROM unnest(%s::text[], %s::text[], "
    "%s::text[], %s::float8[], %s::text[], %s::float8[], %s::text[], %s::text[]) "
    "WITH ORDINALITY AS t(a, b, c, d, e, f, g, h, n) "
    # skipping known ids here (not only ON CONFLICT) keeps retries from using up seq numbers
    "WHERE NOT EXISTS (SELECT 1 FROM events x WHERE x.event_id = t.a) ORDER BY n "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq"
)


def _translate(exc: BaseException) -> BaseException | None:
    """psycopg's errors as offerloop's (None: not a store error, raise it as it is)."""
    if isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return BackendUnavailable(f"PostgreSQL is unavailable: {str(exc)[:300]}")
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError | UnicodeError | OverflowError):
        return DataRejected(f"PostgreSQL refused a value: {str(exc)[:300]}")
    return None


class PostgresDialect:
    name = "postgres"
    seq = "seq"
    transient_gaps = True  # transactions may commit out of seq order

    def __init__(
        self,
        url: str,
        schema: str = "offerloop",
        pool_size: int = 8,
        timeout: float = 10.0,
        migrate: bool = True,
        on_unavailable: Callable[[str], None] | None = None,
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise InvalidInput(f"database_schema {schema!r} must be a lower-case identifier")
        self.url = url
        self.schema = schema
        self.timeout = timeout
        self.transactions = 0
        self.breaker = Breaker("PostgreSQL", cooldown=1.0, on_open=on_unavailable)
        self.deadlines = Deadlines("offerloop-pg-deadlines")
        self._sql: dict[str, str] = {}
        ms = int(timeout * 1000)
        self._kwargs: dict[str, Any] = {
            "options": f"-c search_path={schema} -c statement_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={ms * 3}",
            "connect_timeout": 2,
            # a peer that vanishes (no ACKs) is noticed by the kernel, not after hours
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": ms,
        }
        try:
            # one direct connection first: fails fast (refused, bad password) and migrates
            with psycopg.connect(url, connect_timeout=5) as conn:
                if migrate:
                    self._migrate(conn)
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs=self._kwargs,
                open=True,
                timeout=2.0,  # a caller waits at most this long for a connection
            )
        except psycopg.Error as exc:
            raise BackendUnavailable(f"PostgreSQL at {redact(url)} is unavailable: {exc}") from exc

    def sql(self, query: str) -> str:
        out = self._sql.get(query)
        if out is None:
            out = self._sql[query] = _PLACEHOLDER.sub("%s", query)
        return out

    def any_of(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        return [(f"{column} = ANY(?)", [list(values)])] if values else []

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection whose every answer must come within the deadline."""
        self.breaker.check()
        self.transactions += 1  # a plain counter: what one decision or batch costs (bench)
        limit, wait = self.timeout + 1.0, 2.0
        left = remaining()  # a request's deadline (serving._pools) may be sooner
        if left is not None:
            limit = wait = max(0.05, left)
        try:
            with self._pool.connection(timeout=min(wait, 2.0)) as conn:
                token = self.deadlines.arm(conn.pgconn.socket, limit)
                try:
                    yield conn
                finally:
                    self.deadlines.disarm(token)
        except BaseException as exc:
            mapped = _translate(exc)
            if mapped is None:
                raise
            if isinstance(mapped, BackendUnavailable):
                self.breaker.failure(mapped.message)
            raise mapped from exc
        self.breaker.success()

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def read(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(query.encode(), args)
            return cur.fetchall()

    def insert_events(self, cur: Cursor, rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
        cur.execute(_INSERT_EVENTS, [list(col) for col in zip(*rows, strict=True)])
        return {r[0]: int(r[1]) for r in cur.fetchall()}

    def serialize(self, cur: Cursor, key: str) -> None:
        """A transaction-level advisory lock on the key (in this schema), released at commit."""
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"offerloop:{self.schema}:{key}",)
        )

    @contextmanager
    def run_lock(self, name: str) -> Iterator[None]:
        """A session-level advisory lock, held on a connection of its own for the block:
        every process on any machine sees it, and it is released when the holder's session
        ends (its process died, or its connection dropped)."""
        key = f"offerloop:{self.schema}:{name}"
        try:
            conn = psycopg.connect(self.url, autocommit=True, **self._kwargs)
        except psycopg.Error as exc:
            raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
            if not (row and row[0]):
                raise Conflict(f"another process holds the {name} lock; try again later")
            try:
                yield
            finally:
                # released before the connection closes: the server ends a closed session
                # asynchronously, and a run right after this one would find the lock held
                with contextlib.suppress(psycopg.Error):  # gone: the lock went with it
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        finally:
            conn.close()

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"offerloop:{self.schema}",))
            cur.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            for number, script in enumerate(_MIGRATIONS, start=1):
                if number > current:
                    cur.execute(script.encode())
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))

    def close(self) -> None:
        self._pool.close()
        self.deadlines.close()


class TableArtifacts:
    """Artifacts in a ``bytea`` table: every process on every machine reads the same bytes."""

    def __init__(self, dialect: PostgresDialect) -> None:
        self.dialect = dialect

    def put_artifact(self, name: str, data: bytes) -> None:
        with self.dialect.write() as cur:
            cur.execute(
                "INSERT INTO artifacts VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                "SET data = EXCLUDED.data",
                (name, data),
            )

    def get_artifact(self, name: str) -> bytes | None:
        rows = self.dialect.read("SELECT data FROM artifacts WHERE name = %s", (name,))
        return bytes(rows[0][0]) if rows else None


class PostgresBackend(SqlBackend):
    """All stores in one PostgreSQL schema (default ``offerloop``); ``kwargs`` are
    :class:`PostgresDialect`'s (pool size, timeout, migrate, on_unavailable)."""

    def __init__(self, url: str, schema: str = "offerloop", **kwargs: Any) -> None:
        self.pg = PostgresDialect(url, schema, **kwargs)
        self.url = url
        self.schema = schema
        super().__init__("postgres", self.pg, TableArtifacts(self.pg))

    @property
    def transactions(self) -> int:
        return self.pg.transactions

    @property
    def breaker(self) -> Breaker:
        return self.pg.breaker

    def schema_version(self) -> int:
        (row,) = self.pg.read("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(row[0])

    def drop_schema(self) -> None:
        """Delete everything this backend stored (tests clean up with it)."""
        with self.pg.write() as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
