"""The SQL backends' semantics, written once.

:class:`SqlBackend` holds every query of the event log, the decision log, the registry,
deployments, the load log, the quarantine and the pipeline's run records. It is never
subclassed to change a query: a :class:`Dialect` (``_sqlite.SQLiteDialect``,
``_postgres.PostgresDialect``) supplies only what differs between engines:

* connections and transactions, with the engine's errors translated once
  (``BackendUnavailable`` when the store does not answer, ``DataRejected`` when it refuses
  a value, so a caller can tell "retry later" from "never storable");
* the placeholder (queries here are written with ``?``; PostgreSQL's dialect rewrites them);
* "is one of these values" (``IN (?, ...)`` in chunks, or ``= ANY(?)`` with an array);
* the idempotent bulk insert of events, which returns the new events' sequence numbers;
* schema migrations, the pipeline lock, and where artifacts live (files or a table).

Sequence numbers: every stored event has a ``seq`` that grows with insertion (SQLite's
``rowid``; a PostgreSQL ``BIGSERIAL``), which is what the online state follows
(``features._follow``). On PostgreSQL, concurrent transactions may commit out of ``seq``
order, so a reader can see a gap that fills a moment later (``Dialect.transient_gaps``).

Shadow scores and backfilled values are merged into a decision's JSON text by one
``UPDATE`` per batch, without reading the row: a JSON array (or object) is extended by
splicing the new elements before its closing bracket (``CASE WHEN col = '[]' THEN ?
ELSE substr(col, 1, length(col) - 1) || ',' || substr(?, 2) END``). The same text works in
both engines; an object with a repeated key decodes to its last value, which is exactly
"later values win".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from offerloop._errors import Conflict
from offerloop.backends._records import (
    OFFER_OUTCOME,
    DecisionRecord,
    DeploymentRecord,
    EventRecord,
    ModelRecord,
    QuarantinedRecord,
    ShadowChoice,
    TransitionRecord,
)
from offerloop.backends._rows import (
    DECISION_COLUMNS,
    DecisionDecoder,
    decision_row,
    dumps,
    model_from_row,
    model_row,
    transition_row,
)

__all__ = ["Cursor", "Dialect", "SqlBackend"]

EVENT_COLUMNS = "event_id, player_id, type, ts, properties, received_at, decision_id, attribution"
_MODEL_COLUMNS = "version, campaign, kind, created_at, artifact, sha256, params, lineage, metrics"
_TRANSITION_COLUMNS = "ts, campaign, action, version, from_mode, to_mode, reason, actor"


class Cursor(Protocol):
    """What both engines' cursors offer (sqlite3 and psycopg)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Dialect(Protocol):
    name: str
    seq: str  # the column holding an event's sequence number
    transient_gaps: bool  # may a gap in event seqs fill later (concurrent commits)?

    def sql(self, query: str) -> str:
        """``query`` (written with ``?`` placeholders) in this engine's placeholder style."""
        ...

    def write(self) -> AbstractContextManager[Cursor]:
        """One write transaction, committed on success; errors translated."""
        ...

    def read(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read-only query; errors translated."""
        ...

    def any_of(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        """``column`` is one of ``values``: (SQL condition, arguments) per chunk."""
        ...

    def insert_events(self, cur: Cursor, rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
        """Insert event rows (``EVENT_COLUMNS`` order) whose ids are not stored yet, in order;
        return the new ones' ``{event_id: seq}``. Inside a write transaction."""
        ...

    def run_lock(self, name: str) -> AbstractContextManager[None]:
        """Hold the named lock for the block, across every process using this store;
        ``Conflict`` at once if another holder has it. Released if the holder dies."""
        ...

    def serialize(self, cur: Cursor, key: str) -> None:
        """Inside a write transaction: until it ends, no other transaction that serializes
        on ``key`` runs (SQLite: its write transactions already exclude each other)."""
        ...

    def close(self) -> None: ...


class ArtifactBytes(Protocol):
    def put_artifact(self, name: str, data: bytes) -> None: ...

    def get_artifact(self, name: str) -> bytes | None: ...


def _event(row: Sequence[Any], seq: int = 0) -> EventRecord:
    return EventRecord(
        row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[7] or "", seq
    )


class SqlBackend:
    """Every store of the backend contract over one SQL dialect and one artifact store."""

    def __init__(self, name: str, dialect: Dialect, artifacts: ArtifactBytes) -> None:
        self.name = name
        self.dialect = dialect
        self.artifacts = artifacts
        self._decode = DecisionDecoder()
        d = dialect
        self._q_events_after = d.sql(
            f"SELECT {d.seq}, {EVENT_COLUMNS} FROM events WHERE {d.seq} > ? "
            f"ORDER BY {d.seq} LIMIT ?"
        )
        self._q_insert_decisions = d.sql(
            f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES "
            f"({','.join('?' * len(DECISION_COLUMNS.split(',')))}) "
            "ON CONFLICT (decision_id) DO NOTHING"
        )

    @property
    def transient_gaps(self) -> bool:
        return self.dialect.transient_gaps

    def close(self) -> None:
        self.dialect.close()

    def _in(
        self, query: str, column: str, values: Sequence[Any], args: Sequence[Any] = ()
    ) -> list[Any]:
        """Rows of ``query`` (with ``{cond}`` for ``column`` in ``values``), chunk by chunk."""
        out: list[Any] = []
        for cond, vals in self.dialect.any_of(column, list(dict.fromkeys(values))):
            out.extend(self.dialect.read(self.dialect.sql(query.format(cond=cond)), [*vals, *args]))
        return out

    # -- frequency caps --------------------------------------------------------------------
    def shows(self, player_id: str, since: float) -> list[tuple[str, float]]:
        rows = self.dialect.read(
            self.dialect.sql("SELECT key, ts FROM shows WHERE player_id = ? AND ts > ?"),
            [player_id, since],
        )
        return [(str(k), float(t)) for k, t in rows]

    def take(
        self,
        player_id: str,
        since: float,
        choose: Callable[[list[tuple[str, float]]], Sequence[tuple[str, float]]],
        now: float,
    ) -> list[tuple[str, float]]:
        d = self.dialect
        with d.write() as cur:
            d.serialize(cur, f"shows:{player_id}")
            cur.execute(
                d.sql("SELECT key, ts FROM shows WHERE player_id = ? AND ts > ?"),
                [player_id, since],
            )
            picked = list(choose([(str(k), float(t)) for k, t in cur.fetchall()]))
            windows: dict[str, float] = {}
            for key, window in picked:
                windows[key] = max(windows.get(key, 0.0), window)
            # forget what no cap of these keys can count any more (other keys keep theirs)
            for key, window in windows.items():
                cur.execute(
                    d.sql("DELETE FROM shows WHERE player_id = ? AND key = ? AND ts <= ?"),
                    [player_id, key, now - window],
                )
            if windows:
                cur.executemany(
                    d.sql("INSERT INTO shows (player_id, key, ts) VALUES (?, ?, ?)"),
                    [(player_id, key, now) for key in windows],
                )
        return picked

    # -- events --------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        batch: dict[str, EventRecord] = {}
        for e in events:  # the first of repeated ids within the batch wins
            batch.setdefault(e.event_id, e)
        if not batch:
            return []
        rows = [
            (
                e.event_id,
                e.player_id,
                e.type,
                e.ts,
                dumps(dict(e.properties)),
                e.received_at,
                e.decision_id,
                e.attribution or None,
            )
            for e in batch.values()
        ]
        with self.dialect.write() as cur:
            new = self.dialect.insert_events(cur, rows)
        return [e.with_seq(new[i]) for i, e in batch.items() if i in new]

    def events_after(self, seq: int, limit: int = 10_000) -> list[EventRecord]:
        """Stored events with a sequence number above ``seq``, in sequence order (each
        record carries its ``seq``)."""
        rows = self.dialect.read(self._q_events_after, (seq, limit))
        return [_event(r[1:], int(r[0])) for r in rows]

    def events_at(self, seqs: Sequence[int]) -> list[EventRecord]:
        """The stored events among these sequence numbers, in sequence order."""
        if not seqs:
            return []
        col = self.dialect.seq
        rows = self._in(f"SELECT {col}, {EVENT_COLUMNS} FROM events WHERE {{cond}}", col, seqs)
        return sorted((_event(r[1:], int(r[0])) for r in rows), key=lambda e: e.seq)

    def last_event_seq(self) -> int:
        (row,) = self.dialect.read(f"SELECT COALESCE(MAX({self.dialect.seq}), 0) FROM events")
        return int(row[0])

    def iter_events(self, batch: int = 10_000) -> Iterator[EventRecord]:
        last = 0
        while rows := self.events_after(last, batch):
            last = rows[-1].seq
            yield from rows

    def player_events(self, player_id: str, until: float) -> list[EventRecord]:
        rows = self.dialect.read(
            self.dialect.sql(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE player_id = ? AND ts <= ? "
                "ORDER BY ts, event_id"
            ),
            (player_id, until),
        )
        return [_event(r) for r in rows]

    def event_lags(
        self, start: float, end: float, limit: int = 50_000
    ) -> list[tuple[float, float]]:
        rows = self.dialect.read(
            self.dialect.sql(
                "SELECT received_at, received_at - ts FROM events WHERE received_at >= ? AND "
                "received_at < ? AND type <> ? ORDER BY received_at DESC LIMIT ?"
            ),
            (start, end, OFFER_OUTCOME, limit),
        )
        return [(float(r[0]), float(r[1])) for r in reversed(rows)]

    def purchases_for(self, decision_ids: Sequence[str]) -> list[EventRecord]:
        rows = self._in(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {{cond}} AND type = 'purchase'",
            "decision_id",
            decision_ids,
        )
        return sorted((_event(r) for r in rows), key=lambda e: (e.ts, e.event_id))

    # -- decisions -----------------------------------------------------------------------
    def append_decisions(
        self, decisions: Sequence[DecisionRecord], rows: Sequence[tuple[Any, ...]] = ()
    ) -> int:
        if not decisions:
            return 0
        with self.dialect.write() as cur:
            # rowcount after executemany: the rows inserted (SQLite and psycopg alike)
            cur.executemany(self._q_insert_decisions, rows or [decision_row(d) for d in decisions])
            return max(cur.rowcount, 0)

    def get_decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        if not decision_ids:
            return {}
        rows = self._in(
            f"SELECT {DECISION_COLUMNS} FROM decisions WHERE {{cond}}", "decision_id", decision_ids
        )
        return {r[0]: self._decode(r) for r in rows}

    def decisions(
        self, campaign: str, start: float, end: float, newest: int | None = None
    ) -> list[DecisionRecord]:
        base = f"SELECT {DECISION_COLUMNS} FROM decisions WHERE campaign = ? AND ts >= ? AND ts < ?"
        if newest is not None:
            rows = self.dialect.read(
                self.dialect.sql(f"{base} ORDER BY ts DESC, decision_id DESC LIMIT ?"),
                (campaign, start, end, newest),
            )[::-1]
        else:
            rows = self.dialect.read(
                self.dialect.sql(f"{base} ORDER BY ts, decision_id"), (campaign, start, end)
            )
        return [self._decode(r) for r in rows]

    def count_decisions(self, campaign: str, start: float, end: float) -> int:
        rows = self.dialect.read(
            self.dialect.sql(
                "SELECT COUNT(*) FROM decisions WHERE campaign = ? AND ts >= ? AND ts < ?"
            ),
            (campaign, start, end),
        )
        return int(rows[0][0])

    def _splice(self, column: str, empty: str, values: Mapping[str, str]) -> int:
        """Extend the JSON array/object text in ``column`` of each decision by the elements
        of ``values[decision_id]`` (see the module docstring); returns rows changed."""
        if not values:
            return 0
        query = self.dialect.sql(
            f"UPDATE decisions SET {column} = CASE WHEN {column} = '{empty}' THEN ? "
            f"ELSE substr({column}, 1, length({column}) - 1) || ',' || substr(?, 2) END "
            "WHERE decision_id = ?"
        )
        args = [(text, text, did) for did, text in values.items() if text != empty]
        if not args:
            return 0
        with self.dialect.write() as cur:
            cur.executemany(query, args)
            return max(cur.rowcount, 0)

    def add_shadows(self, values: Mapping[str, Sequence[ShadowChoice]]) -> int:
        return self._splice(
            "shadows", "[]", {k: dumps([s.__dict__ for s in v]) for k, v in values.items()}
        )

    def add_backfill(self, values: Mapping[str, Mapping[str, Any]]) -> int:
        return self._splice("backfilled", "{}", {k: dumps(dict(v)) for k, v in values.items()})

    # -- models and artifacts ------------------------------------------------------------
    def next_model_number(self) -> int:
        with self.dialect.write() as cur:
            cur.execute("UPDATE counters SET value = value + 1 WHERE name = 'model_number'")
            cur.execute("SELECT value FROM counters WHERE name = 'model_number'")
            return int(cur.fetchone()[0])

    def put_model(self, model: ModelRecord) -> None:
        with self.dialect.write() as cur:
            cur.execute(
                self.dialect.sql(
                    f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (version) DO NOTHING"
                ),
                model_row(model),
            )
            if cur.rowcount != 1:
                raise Conflict(f"model version {model.version} already exists")

    def get_model(self, version: str) -> ModelRecord | None:
        rows = self.dialect.read(
            self.dialect.sql(f"SELECT {_MODEL_COLUMNS} FROM models WHERE version = ?"), (version,)
        )
        return model_from_row(rows[0]) if rows else None

    def list_models(self) -> list[ModelRecord]:
        rows = self.dialect.read(
            f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY created_at, version"
        )
        return [model_from_row(r) for r in rows]

    def put_artifact(self, name: str, data: bytes) -> None:
        if "/" in name or name.startswith(".") or not name:
            raise ValueError(f"bad artifact name {name!r}")
        self.artifacts.put_artifact(name, data)

    def get_artifact(self, name: str) -> bytes | None:
        return self.artifacts.get_artifact(name)

    # -- deployments ---------------------------------------------------------------------
    def deployments(self, campaign: str) -> list[DeploymentRecord]:
        rows = self.dialect.read(
            self.dialect.sql(
                "SELECT campaign, version, mode, since, share FROM deployments WHERE campaign = ? "
                "ORDER BY since, version"
            ),
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
        sql = self.dialect.sql
        with self.dialect.write() as cur:
            # compare-and-swap: the increment succeeds only at the expected generation (the
            # row lock it takes serialises concurrent swaps in PostgreSQL too)
            cur.execute(
                sql(
                    "UPDATE counters SET value = value + 1 WHERE name = 'generation' AND value = ?"
                ),
                (expected_generation,),
            )
            if cur.rowcount != 1:
                return False
            cur.execute(sql("DELETE FROM deployments WHERE campaign = ?"), (campaign,))
            if deployments:
                cur.executemany(
                    sql(
                        "INSERT INTO deployments (campaign, version, mode, since, share) "
                        "VALUES (?,?,?,?,?)"
                    ),
                    [(d.campaign, d.version, d.mode, d.since, d.share) for d in deployments],
                )
            if transitions:
                cur.executemany(
                    sql(
                        f"INSERT INTO transitions ({_TRANSITION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
                    ),
                    [transition_row(t) for t in transitions],
                )
            return True

    def transitions(self, campaign: str) -> list[TransitionRecord]:
        rows = self.dialect.read(
            self.dialect.sql(
                f"SELECT {_TRANSITION_COLUMNS} FROM transitions WHERE campaign = ? ORDER BY seq"
            ),
            (campaign,),
        )
        return [TransitionRecord(*r) for r in rows]

    def generation(self) -> int:
        (row,) = self.dialect.read("SELECT value FROM counters WHERE name = 'generation'")
        return int(row[0])

    # -- batch loads ---------------------------------------------------------------------
    def record_load(self, source: str, file_key: str, loaded_at: float) -> float:
        sql = self.dialect.sql
        with self.dialect.write() as cur:
            cur.execute(
                sql(
                    "INSERT INTO batch_loads (source, file_key, loaded_at) VALUES (?,?,?) "
                    "ON CONFLICT (source, file_key) DO NOTHING"
                ),
                (source, file_key, loaded_at),
            )
            cur.execute(
                sql("SELECT loaded_at FROM batch_loads WHERE source = ? AND file_key = ?"),
                (source, file_key),
            )
            return float(cur.fetchone()[0])

    def loads(self, source: str) -> list[tuple[str, float]]:
        rows = self.dialect.read(
            self.dialect.sql(
                "SELECT file_key, loaded_at FROM batch_loads WHERE source = ? ORDER BY seq"
            ),
            (source,),
        )
        return [(r[0], float(r[1])) for r in rows]

    # -- quarantine ----------------------------------------------------------------------
    def quarantine(self, records: Sequence[QuarantinedRecord]) -> int:
        """Keep records the store refused, for an operator to inspect (idempotent on kind +
        key). Their payload and reason are stored as ASCII-only JSON text, which every
        engine accepts whatever the record held."""
        if not records:
            return 0
        with self.dialect.write() as cur:
            cur.executemany(
                self.dialect.sql(
                    "INSERT INTO quarantine (kind, record_key, payload, reason, at) "
                    "VALUES (?,?,?,?,?) ON CONFLICT (kind, record_key) DO NOTHING"
                ),
                [
                    (
                        q.kind,
                        json.dumps(q.key),
                        json.dumps(q.payload, default=str),
                        json.dumps(q.reason),
                        q.at,
                    )
                    for q in records
                ],
            )
            return max(cur.rowcount, 0)

    def quarantined(self, limit: int = 1000) -> list[QuarantinedRecord]:
        rows = self.dialect.read(
            self.dialect.sql(
                "SELECT kind, record_key, payload, reason, at FROM quarantine ORDER BY seq DESC "
                "LIMIT ?"
            ),
            (limit,),
        )
        return [
            QuarantinedRecord(r[0], json.loads(r[1]), json.loads(r[2]), json.loads(r[3]), r[4])
            for r in rows[::-1]
        ]

    # -- pipeline runs -------------------------------------------------------------------
    def put_run(self, doc: Mapping[str, Any]) -> None:
        """Insert or replace a pipeline run record (``doc["id"]``, ``doc["campaign"]``)."""
        sql = self.dialect.sql
        with self.dialect.write() as cur:
            cur.execute(
                sql(
                    "INSERT INTO pipeline_runs (id, campaign, status, doc) VALUES (?,?,?,?) "
                    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, doc = excluded.doc"
                ),
                (doc["id"], doc["campaign"], doc.get("status", ""), json.dumps(doc, default=str)),
            )

    def runs(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Pipeline run records, oldest first (optionally of one campaign)."""
        if campaign is None:
            rows = self.dialect.read("SELECT doc FROM pipeline_runs ORDER BY seq")
        else:
            rows = self.dialect.read(
                self.dialect.sql("SELECT doc FROM pipeline_runs WHERE campaign = ? ORDER BY seq"),
                (campaign,),
            )
        return [json.loads(r[0]) for r in rows]

    def run_lock(self, name: str = "pipeline") -> AbstractContextManager[None]:
        return self.dialect.run_lock(name)
