"""The offline engine: every feature as of many (player, time) rows at once, in DuckDB.

The same definitions and the same "known at t" rule as the online engine:

* finite windows: a range join of the query rows with each stream's events
  (``t - w <= ts <= t`` and ``received_at <= t``), all windows of a stream in one pass;
* lifetime aggregates, profile attributes and time-since-last: a running window over the
  stream's events and the query rows, ordered by the moment each event became known,
  ``max(ts, received_at)`` — an event counts at ``t`` exactly when that moment is ``<= t``.

Events come from the columnar store (``features._columnar``: typed Parquet columns, integer
player keys), or straight from the log: the embedded backend's SQLite file (through the
bundled ``sqlite_scanner`` extension), PostgreSQL's table, or records in memory. Either way
the queries below read one shape, ``ev``: a player key, the event's type, times and id, and
for each property the features read a number column ``n<j>`` and a text column ``s<j>``
(NULL where the value is not of that kind). From the log that shape is pulled out of the JSON
properties in one pass; the columnar store has it on disk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
from numpy.typing import NDArray

from offerloop._errors import BackendUnavailable
from offerloop.backends import EventRecord
from offerloop.campaigns import Condition
from offerloop.features._columnar import (
    ColumnarStore,
    columnar_properties,
    number_column,
    quoted,
    string_column,
)
from offerloop.features._defs import (
    _UNITS,
    Aggregate,
    Context,
    Feature,
    FeatureSet,
    FeatureValue,
    Profile,
    SinceLast,
    properties_read,
    stream_of,
)

__all__ = ["DuckRunner", "OfflineEngine", "QueryRows", "SqlRunner"]

NUMERIC = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')"


@dataclass(frozen=True)
class QueryRows:
    """The (player, time) pairs to compute features for, plus each row's request context."""

    player_ids: Sequence[str]
    ts: NDArray[np.float64]
    contexts: Sequence[Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.player_ids)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _prop(name: str) -> str:
    return _sql_str(f'$."{name}"')


def _where_sql(conds: Sequence[Condition], props: Sequence[str]) -> str:
    parts = []
    for c in conds:
        j = props.index(c.feature)
        if isinstance(c.value, str):
            parts.append(f"s{j} {c.op} {_sql_str(c.value)}")
        else:
            parts.append(f"n{j} {c.op} {float(c.value)!r}")
    return " AND ".join(f"({p})" for p in parts) if parts else "TRUE"


def _typed_sql(props: Sequence[str]) -> str:
    """The ``n<j>``/``s<j>`` columns pulled out of JSON ``properties`` (as the store has them)."""
    cols = []
    for j, p in enumerate(props):
        jp = _prop(p)
        cols.append(
            f"CASE WHEN json_type(properties, {jp}) IN {NUMERIC} "
            f"THEN CAST(json_extract(properties, {jp}) AS DOUBLE) END AS n{j}"
        )
        cols.append(
            f"CASE WHEN json_type(properties, {jp}) = 'VARCHAR' "
            f"THEN json_extract_string(properties, {jp}) END AS s{j}"
        )
    return "".join(", " + c for c in cols)


def _bundled_extension(name: str) -> str | None:
    """A DuckDB extension shipped in a ``duckdb-ext-*`` wheel (never downloaded at run time)."""
    try:
        import duckdb_ext  # type: ignore[import-untyped]
    except ImportError:
        return None
    base = Path(next(iter(duckdb_ext.__path__))) / "extensions"
    found = sorted(base.glob(f"v{duckdb.__version__}/*/{name}.duckdb_extension"))
    return str(found[0]) if found else None


def _sqlite_scanner() -> str | None:
    return _bundled_extension("sqlite_scanner")


class SqlRunner(Protocol):
    """Where the engine's SQL runs (DuckDB here, Spark in ``features._spark``): the few
    operations and the few spellings that differ; every query is written once, below."""

    def execute(self, sql: str) -> None:
        """Run a statement (``CREATE OR REPLACE TEMP VIEW/TABLE ... AS ...``)."""
        ...

    def register(self, name: str, cols: Mapping[str, NDArray[Any]]) -> None:
        """Columns as a temporary table ``name``."""
        ...

    def fetch(self, sql: str) -> dict[str, NDArray[Any]]:
        """A query's result as columns; NULLs masked (numpy masked arrays)."""
        ...

    def parquet(self, files: Sequence[str]) -> str:
        """A FROM-clause source reading these Parquet files."""
        ...

    def struct(self, **fields: str) -> str:
        """A struct value (ordered by its fields in order)."""
        ...

    def ident(self, name: str) -> str:
        """A quoted identifier."""
        ...

    def distinct_count(self, arg: str, over: str) -> str:
        """The number of distinct non-NULL ``arg`` as a window function over ``over``."""
        ...

    def arg_max(self, value: str, key: str) -> str:
        """The aggregate: ``value`` of the row with the greatest ``key``."""
        ...

    def temp_table(self, name: str, select: str) -> None:
        """``select`` materialised (or cached) as ``name``."""
        ...

    def close(self) -> None: ...


class DuckRunner:
    def __init__(self, threads: int | None = None) -> None:
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {threads or os.cpu_count() or 1}")

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def register(self, name: str, cols: Mapping[str, NDArray[Any]]) -> None:
        self.con.register(f"_{name}_in", dict(cols))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _{name}_in")
        self.con.unregister(f"_{name}_in")

    def fetch(self, sql: str) -> dict[str, NDArray[Any]]:
        return dict(self.con.execute(sql).fetchnumpy())

    def parquet(self, files: Sequence[str]) -> str:
        return "read_parquet([" + ", ".join(_sql_str(f) for f in files) + "])"

    def struct(self, **fields: str) -> str:
        return "{" + ", ".join(f"'{k}': {v}" for k, v in fields.items()) + "}"

    def arg_max(self, value: str, key: str) -> str:
        return f"arg_max({value}, {key})"

    def ident(self, name: str) -> str:
        return quoted(name)

    def distinct_count(self, arg: str, over: str) -> str:
        return f"count(DISTINCT {arg}){over}"

    def temp_table(self, name: str, select: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}")

    def close(self) -> None:
        self.con.close()


class OfflineEngine:
    """Point-in-time feature values for many rows, exactly as the online engine serves them."""

    def __init__(
        self, features: FeatureSet, threads: int | None = None, runner: SqlRunner | None = None
    ) -> None:
        self.features = features
        self.sql: SqlRunner = runner or DuckRunner(threads)
        # the log sources are DuckDB's
        self.con = self.sql.con if isinstance(self.sql, DuckRunner) else None
        self._batch_sources: list[Any] = []
        self._columnar: ColumnarStore | None = None
        # every property read (as a value or in a condition): column n<j>/s<j> of ``ev``
        self._props = columnar_properties(features)
        # per event type, the properties its features read: one pass over each type's
        # events serves every feature on it, conditions as filters
        by_type: dict[str, dict[str, None]] = {}
        for f in features:
            if (key := stream_of(f)) is not None:
                by_type.setdefault(key[0], {}).update(dict.fromkeys(properties_read(f)))
        self._types = {event: list(props) for event, props in by_type.items()}

    def close(self) -> None:
        """Close the connection (DuckDB's; a Spark session stays its owner's)."""
        self.sql.close()

    def _duck(self) -> duckdb.DuckDBPyConnection:
        if self.con is None:
            raise ValueError("this engine reads the columnar store only (use_columnar)")
        return self.con

    # -- event sources -------------------------------------------------------------------
    def use_columnar(self, store: ColumnarStore) -> None:
        """Read events from a columnar store (synced by the caller: it reads what is there)."""
        missing = [p for p in self._props if p not in store.properties]
        if missing:
            raise ValueError(f"the columnar store has no columns for {', '.join(missing)}")
        self._columnar = store

    def use_sqlite(self, path: str | Path) -> None:
        """Read events from an embedded backend's SQLite database."""
        ext = _sqlite_scanner()
        if ext is None:
            raise BackendUnavailable(
                "DuckDB's sqlite_scanner (package duckdb-ext-sqlite) is missing"
            )
        con = self._duck()
        con.execute(f"LOAD {_sql_str(ext)}")
        con.execute(
            "CREATE OR REPLACE VIEW events AS SELECT event_id, player_id, type, ts, properties, "
            f"received_at FROM sqlite_scan({_sql_str(str(path))}, 'events')"
        )

    def use_postgres(self, url: str, schema: str) -> None:
        """Read events straight from the PostgreSQL backend's table (DuckDB's bundled
        postgres_scanner: the scan is pushed to PostgreSQL, read in parallel, no copy)."""
        ext = _bundled_extension("postgres_scanner")
        if ext is None:
            raise BackendUnavailable(
                "DuckDB's postgres_scanner (package duckdb-ext-postgres) is missing"
            )
        con = self._duck()
        con.execute(f"LOAD {_sql_str(ext)}")
        con.execute(f"ATTACH {_sql_str(url)} AS pg (TYPE postgres, READ_ONLY)")
        con.execute(
            "CREATE OR REPLACE VIEW events AS SELECT event_id, player_id, type, ts, properties, "
            f'received_at FROM pg."{schema}".events'
        )

    def use_batches(self, sources: Sequence[Any]) -> None:
        """Batch sources (``BatchSource``) whose loaded rows serve their features: a row
        counts at ``t`` when its timestamp and its file's load time are ``<= t``."""
        self._batch_sources = list(sources)

    def use_records(self, events: Sequence[EventRecord]) -> None:
        """Read events from memory (tests, small jobs)."""
        import json

        cols = {
            "event_id": np.array([e.event_id for e in events], dtype=object),
            "player_id": np.array([e.player_id for e in events], dtype=object),
            "type": np.array([e.type for e in events], dtype=object),
            "ts": np.array([e.ts for e in events], dtype=np.float64),
            "properties": np.array([json.dumps(dict(e.properties)) for e in events], dtype=object),
            "received_at": np.array([e.received_at for e in events], dtype=np.float64),
        }
        con = self._duck()
        if not events:
            con.execute(
                "CREATE OR REPLACE TABLE events (event_id VARCHAR, player_id VARCHAR, type VARCHAR,"
                " ts DOUBLE, properties VARCHAR, received_at DOUBLE)"
            )
            return
        con.register("_events_in", cols)
        con.execute("CREATE OR REPLACE TABLE events AS SELECT * FROM _events_in")
        con.unregister("_events_in")

    # -- computation ---------------------------------------------------------------------
    def compute(
        self, rows: QueryRows, external: Mapping[str, Sequence[FeatureValue]] | None = None
    ) -> dict[str, NDArray[Any]]:
        """Columns of feature values (one array per feature, in row order)."""
        n = len(rows)
        store = self._columnar
        keys: NDArray[Any] = (
            np.asarray(rows.player_ids, dtype=object)
            if store is None
            else store.player_keys(rows.player_ids)
        )
        self.sql.register(
            "q",
            {
                "row_id": np.arange(n, dtype=np.int64),
                "pkey": keys,
                "t": np.asarray(rows.ts, dtype=np.float64),
            },
        )
        types = ", ".join(sorted(_sql_str(t) for t in self._types)) or "NULL"
        if store is None:
            # one pass over the log (its scan and the JSON are the slow part), only the
            # types read, properties pulled out as typed columns
            self._duck().execute(
                "CREATE OR REPLACE TEMP TABLE ev AS SELECT player_id AS pkey, type, ts, "
                f"event_id, received_at{_typed_sql(self._props)} FROM events "
                f"WHERE type IN ({types})"
            )
        else:
            self._columnar_view(store, float(np.max(rows.ts)) if n else None)
        raw: dict[str, NDArray[Any]] = {}
        for i, (event, props) in enumerate(self._types.items()):
            raw.update(self._type_columns(i, event, props, n))
        batch_raw = self._batch_columns(rows)
        t = np.asarray(rows.ts, dtype=np.float64)
        out: dict[str, NDArray[Any]] = {}
        for f in self.features:
            if isinstance(f, Context):
                ctxs = rows.contexts or [{}] * n
                out[f.name] = np.array([f.coerce(c.get(f.key)) for c in ctxs], dtype=_dtype(f))
            elif isinstance(f, SinceLast):
                last = raw[f.name]
                val = np.where(np.isnan(last), f.default, (t - last) / _UNITS[f.unit])
                out[f.name] = val.astype(np.float64)
            elif f.name in raw:
                out[f.name] = _finish(f, raw[f.name])
            elif f.name in batch_raw:
                out[f.name] = np.array([f.coerce(v) for v in batch_raw[f.name]], dtype=_dtype(f))
            else:
                ext = (external or {}).get(f.name)
                vals = ext if ext is not None else [f.default] * n
                out[f.name] = np.array([f.coerce(v) for v in vals], dtype=_dtype(f))
        return out

    def _columnar_view(self, store: ColumnarStore, until: float | None) -> None:
        files = [str(p) for p in store.files(until)]
        cols = ", ".join(
            ["pkey", "type", "ts", "event_id", "received_at"]
            + [
                f"{self.sql.ident(number_column(p))} AS n{j}, "
                f"{self.sql.ident(string_column(p))} AS s{j}"
                for j, p in enumerate(self._props)
            ]
        )
        if not files:
            nulls = ", ".join(
                ["CAST(NULL AS BIGINT) AS pkey", "CAST(NULL AS VARCHAR(1)) AS type"]
                + ["CAST(NULL AS DOUBLE) AS ts", "CAST(NULL AS VARCHAR(1)) AS event_id"]
                + ["CAST(NULL AS DOUBLE) AS received_at"]
                + [
                    f"CAST(NULL AS DOUBLE) AS n{j}, CAST(NULL AS VARCHAR(1)) AS s{j}"
                    for j in range(len(self._props))
                ]
            )
            self.sql.execute(f"CREATE OR REPLACE TEMP VIEW ev AS SELECT {nulls} WHERE 1 = 0")
            return
        self.sql.execute(
            f"CREATE OR REPLACE TEMP VIEW ev AS SELECT {cols} FROM {self.sql.parquet(files)}"
        )

    def _batch_columns(self, rows: QueryRows) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for src in self._batch_sources:
            looked = [
                src.lookup(p, float(t)) for p, t in zip(rows.player_ids, rows.ts, strict=True)
            ]
            for f in src.features:
                out[f.name] = [v[f.name] for v in looked]
        return out

    def rows(self, columns: Mapping[str, NDArray[Any]]) -> list[dict[str, FeatureValue]]:
        """Columns → one dict per row, with plain Python values."""
        names = [f.name for f in self.features]
        lists = [columns[nm].tolist() for nm in names]
        return [dict(zip(names, vals, strict=True)) for vals in zip(*lists, strict=True)]

    def _type_columns(
        self, i: int, event: str, props: list[str], n: int
    ) -> dict[str, NDArray[Any]]:
        """Every feature on one event type: one range join for the finite windows, one
        running window for the rest; a feature's ``where`` is a filter of its aggregate."""
        every = self._props  # _agg_sql and _running_sql name columns by their global index
        own = [f"n{every.index(p)}, s{every.index(p)}" for p in props]
        extra = "".join(", " + c for c in own)
        self.sql.temp_table(
            f"s{i}",
            f"SELECT pkey, ts, event_id, received_at, greatest(ts, received_at) AS v{extra} "
            f"FROM ev WHERE type = {_sql_str(event)}",
        )
        feats = [f for f in self.features if (k := stream_of(f)) is not None and k[0] == event]
        windowed = [f for f in feats if isinstance(f, Aggregate) and not math.isinf(f.seconds)]
        running = [f for f in feats if f not in windowed]
        out: dict[str, NDArray[Any]] = {}
        if windowed:
            wmax = max(f.seconds for f in windowed)
            aggs = ", ".join(
                _agg_sql(self.sql, f, every, f"s.ts >= q.t - {f.seconds!r}")
                + " AS "
                + self.sql.ident("f_" + f.name)
                for f in windowed
            )
            sql = (
                f"SELECT q.row_id, {aggs} FROM q JOIN s{i} s ON s.pkey = q.pkey "
                f"AND s.ts <= q.t AND s.received_at <= q.t AND s.ts >= q.t - {wmax!r} "
                "GROUP BY q.row_id"
            )
            out.update(self._fetch(sql, windowed, n))
        if running:
            aggs = ", ".join(
                (
                    _agg_sql(self.sql, f, every, None, over=" OVER w")
                    if isinstance(f, Aggregate)
                    else _running_sql(self.sql, f, every) + " OVER w"
                )
                + " AS "
                + self.sql.ident("f_" + f.name)
                for f in running
            )
            base_cols = ", ".join(["ts", "event_id", *own])
            nulls = ", ".join(
                ["NULL AS ts", "NULL AS event_id"]
                + [f"NULL AS n{every.index(p)}, NULL AS s{every.index(p)}" for p in props]
            )
            sql = (
                f"WITH u AS (SELECT pkey, v AS ord, 0 AS is_q, NULL AS row_id, {base_cols} "
                f"FROM s{i} UNION ALL SELECT pkey, t AS ord, 1 AS is_q, row_id, {nulls} "
                f"FROM q) SELECT * FROM (SELECT row_id, is_q, {aggs} FROM u "
                "WINDOW w AS (PARTITION BY pkey ORDER BY ord, is_q "
                "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) r WHERE is_q = 1"
            )
            out.update(self._fetch(sql, running, n))
        return out

    def _fetch(self, sql: str, feats: Sequence[Feature], n: int) -> dict[str, NDArray[Any]]:
        res = self.sql.fetch(sql)
        idx = np.asarray(res["row_id"], dtype=np.int64)
        out: dict[str, NDArray[Any]] = {}
        for f in feats:
            col = res[f"f_{f.name}"]
            numeric = not (isinstance(f, Aggregate | Profile) and _is_str(f))
            full: NDArray[Any] = np.full(n, np.nan) if numeric else np.full(n, None, dtype=object)
            mask = np.ma.getmaskarray(col)
            values = np.array(np.ma.getdata(col), dtype=np.float64 if numeric else object)
            values[mask] = np.nan if numeric else None
            full[idx] = values
            out[f.name] = full
        return out


def _is_str(f: Feature) -> bool:
    if isinstance(f, Profile):
        return f.type == "category"
    return isinstance(f, Aggregate) and f.agg == "last" and f.type == "category"


def _agg_sql(
    sql: SqlRunner, f: Aggregate, props: list[str], window: str | None, over: str = ""
) -> str:
    """The aggregate of ``f``: over the rows of a GROUP BY (``window``: the condition of its
    narrower window) or, with ``over``, as a running window function; the feature's
    ``where`` conditions filter the rows it aggregates."""
    where = _where_sql(f.where, props)
    cond = " AND ".join(c for c in (window, where if f.where else None) if c) or "TRUE"
    if f.agg == "count":
        return (f"count(ts) FILTER (WHERE {cond})" if cond != "TRUE" else "count(ts)") + over
    j = props.index(f.property or "")
    n, s = f"n{j}", f"s{j}"
    if f.agg == "distinct_count":
        arg = (
            f"CASE WHEN ({n} IS NOT NULL OR {s} IS NOT NULL) AND {where} "
            f"THEN {sql.struct(n=n, s=s)} END"
        )
        if over:
            return sql.distinct_count(arg, over)
        return f"count(DISTINCT {arg}) FILTER (WHERE {cond})"
    if f.agg == "last":
        col = s if f.type == "category" else n
        key = f"CASE WHEN {col} IS NOT NULL THEN {sql.struct(ts='ts', id='event_id')} END"
        return f"{sql.arg_max(col, key)} FILTER (WHERE {cond} AND {col} IS NOT NULL){over}"
    fn = {"sum": "sum", "mean": "avg", "min": "min", "max": "max"}[f.agg]
    return f"{fn}({n}) FILTER (WHERE {cond}){over}"


def _running_sql(sql: SqlRunner, f: Feature, props: list[str]) -> str:
    if isinstance(f, SinceLast):
        return f"max(ts) FILTER (WHERE {_where_sql(f.where, props)})" if f.where else "max(ts)"
    assert isinstance(f, Profile)
    j = props.index(f.attribute)
    col = f"s{j}" if f.type == "category" else f"n{j}"
    key = f"CASE WHEN {col} IS NOT NULL THEN {sql.struct(ts='ts', id='event_id')} END"
    return sql.arg_max(col, key)


def _dtype(f: Feature) -> Any:
    return object if f.type == "category" else (np.int64 if f.type == "int" else np.float64)


def _finish(f: Feature, col: NDArray[Any]) -> NDArray[Any]:
    """Raw SQL results → typed values, with the default where there was nothing to aggregate."""
    if f.type == "category":
        return np.array([v if isinstance(v, str) else f.default for v in col], dtype=object)
    empty = np.isnan(col)
    if isinstance(f, Aggregate) and f.agg in ("count", "distinct_count"):
        empty |= col == 0
    if f.type == "int":
        ok = ~empty & (np.floor(np.where(empty, 0, col)) == np.where(empty, 0, col))
        return np.where(ok, np.where(empty, 0, col), f.default).astype(np.int64)
    return np.where(empty, float(f.default), col).astype(np.float64)
