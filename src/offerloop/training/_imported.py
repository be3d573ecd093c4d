"""Logged bandit data from other systems: import a CSV or Parquet file once, then train,
evaluate and warm-start on it exactly like on offerloop's own decision log.

An imported log is a directory ``<data_dir>/logs/NAME/``: ``rows.parquet`` (columnar, one
column per field: ``ts`` in epoch seconds, ``action``, ``reward``, ``propensity``, then the
features) and ``meta.json`` (the feature schema, the actions, the source, how each column was
encoded and the Parquet file's sha256, checked on load). The import runs inside DuckDB and
is validated before anything is written; the directory appears atomically.

Feature columns are numeric (missing values are 0), categorical or hashed. A categorical
column is dictionary-encoded (every value its own category) when it has at most
``max_categories`` distinct values and hashed into that many buckets otherwise; ``--hashed``
columns always are (``h<k>``, ``k = md5(value) mod buckets``). What happened to each column is
stated in ``ImportedLog.notes`` and printed by ``offerloop logs import``: nothing is capped
silently. Column lists accept globs (``--numeric 'f_*'``).
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from offerloop._errors import Conflict, InvalidInput, NotFound
from offerloop.features import Encoder
from offerloop.policies import LoggedData

__all__ = ["ImportSpec", "ImportedLog", "import_log", "load_log", "read_table", "warm_start"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
FORMAT = "offerloop.log/2"


@dataclass(frozen=True)
class ImportSpec:
    ts: str
    action: str
    reward: str
    propensity: str
    numeric: Sequence[str] = ()
    categorical: Sequence[str] = ()
    hashed: Sequence[str] = ()
    hash_buckets: int = 16
    max_categories: int = 256  # a categorical column with more values is hashed into this many


@dataclass(frozen=True)
class ImportedLog:
    name: str
    data: LoggedData
    actions: list[str]
    encoder: Encoder
    source: str
    notes: list[str] = field(default_factory=list)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table_sql(path: Path) -> str:
    """The DuckDB table function that reads a CSV or Parquet file."""
    reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
    return f"{reader}({_lit(str(path))})"


def _unreadable(path: Path, exc: duckdb.Error) -> InvalidInput:
    return InvalidInput(f"{path}: cannot read: {str(exc).splitlines()[0]}")


def read_table(path: str | Path) -> dict[str, Any]:
    """Every column of a CSV or Parquet file as numpy arrays (one-line error if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    try:
        with duckdb.connect() as con:
            table: dict[str, Any] = con.execute(f"SELECT * FROM {_table_sql(path)}").fetchnumpy()
    except duckdb.Error as exc:
        raise _unreadable(path, exc) from exc
    return table


def _expand(patterns: Sequence[str], columns: list[str], path: Path, kind: str) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        hits = (
            [c for c in columns if fnmatch.fnmatchcase(c, pat)]
            if any(ch in pat for ch in "*?[")
            else ([pat] if pat in columns else [])
        )
        if not hits:
            close = difflib.get_close_matches(pat, columns, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InvalidInput(
                f"{path.name}: no {kind} column matches {pat!r} "
                f"({len(columns)} columns, e.g. {', '.join(columns[:5])}){hint}"
            )
        out.extend(h for h in hits if h not in out)
    return out


def _ts_sql(col: str, kind: str) -> str:
    c = _q(col)
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return f"epoch(CAST({c} AS TIMESTAMPTZ))"
    if kind in ("VARCHAR", "JSON"):
        return f"epoch(TRY_CAST({c} AS TIMESTAMPTZ))"
    return f"TRY_CAST({c} AS DOUBLE)"


def _first_bad(con: duckdb.DuckDBPyConnection, source: str, cond: str) -> tuple[int, int, Any]:
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE {cond}), min(rn) FILTER (WHERE {cond}) FROM {source}"
    ).fetchone()
    assert row is not None
    return int(row[0]), (-1 if row[1] is None else int(row[1])), None


def import_log(
    data_dir: str | Path, name: str, path: str | Path, spec: ImportSpec, replace: bool = False
) -> ImportedLog:
    """Import a CSV or Parquet file as the log ``name`` (see the module doc) and return it
    loaded. InvalidInput for a bad name, file, column or value (each bad column named with its
    first bad row, nothing written); Conflict if the log exists and ``replace`` is False."""
    if not _NAME.match(name):
        raise InvalidInput(f"log name {name!r} must be a lowercase identifier")
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    if spec.hash_buckets < 2 or spec.max_categories < 2:
        raise InvalidInput("hash buckets and max categories must be at least 2")
    logs = Path(data_dir) / "logs"
    out = logs / name
    if out.exists() and not replace:
        raise Conflict(f"log {name!r} exists; pass --replace to overwrite it")
    with duckdb.connect() as con:
        try:
            con.execute(
                "CREATE TEMP VIEW src AS SELECT row_number() OVER () - 1 AS rn, * "
                f"FROM {_table_sql(path)}"
            )
            described = con.execute("DESCRIBE src").fetchall()
        except duckdb.Error as exc:
            raise _unreadable(path, exc) from exc
        types = {str(r[0]): str(r[1]) for r in described if r[0] != "rn"}
        columns = list(types)
        fixed = [spec.ts, spec.action, spec.reward, spec.propensity]
        for col, what in zip(fixed, ("timestamp", "action", "reward", "propensity"), strict=True):
            _expand([col], columns, path, what)
        numeric = [c for c in _expand(spec.numeric, columns, path, "numeric") if c not in fixed]
        categorical = [
            c for c in _expand(spec.categorical, columns, path, "categorical") if c not in fixed
        ]
        hashed = [c for c in _expand(spec.hashed, columns, path, "hashed") if c not in fixed]
        features = numeric + categorical + hashed
        if len(set(features)) != len(features):
            dup = sorted({c for c in features if features.count(c) > 1})
            raise InvalidInput(f"column {dup[0]!r} is given more than one feature type")
        n = int(con.execute("SELECT count(*) FROM src").fetchone()[0])  # type: ignore[index]
        if n == 0:
            raise InvalidInput(f"{path}: no rows")
        ts = _ts_sql(spec.ts, types[spec.ts])
        p, r, a = _q(spec.propensity), _q(spec.reward), _q(spec.action)
        checks = [
            (
                f"TRY_CAST({p} AS DOUBLE) IS NULL OR NOT (TRY_CAST({p} AS DOUBLE) > 0 "
                f"AND TRY_CAST({p} AS DOUBLE) <= 1)",
                spec.propensity,
                "not in (0, 1]",
            ),
            (
                f"TRY_CAST({r} AS DOUBLE) IS NULL OR NOT isfinite(TRY_CAST({r} AS DOUBLE))",
                spec.reward,
                "not a finite number",
            ),
            (f"{a} IS NULL OR CAST({a} AS VARCHAR) = ''", spec.action, "missing"),
            (f"{ts} IS NULL OR NOT isfinite({ts})", spec.ts, "not a time"),
        ]
        problems = []
        for cond, col, what in checks:
            count, first, _ = _first_bad(con, "src", cond)
            if count:
                value = con.execute(f"SELECT {_q(col)} FROM src WHERE rn = {first}").fetchone()
                shown = None if value is None else value[0]
                more = f" (and {count - 1} more rows)" if count > 1 else ""
                problems.append(f"row {first}: {col}: {shown!r} is {what}{more}")
        if problems:
            raise InvalidInput("; ".join(problems))
        notes: list[str] = []
        schema: list[dict[str, Any]] = [
            {"name": c, "type": "float", "default": 0.0, "transform": "identity", "scale": 1.0}
            for c in numeric
        ]
        select = [
            f"{ts} AS ts",
            f"CAST({a} AS VARCHAR) AS action",
            f"CAST({r} AS DOUBLE) AS reward",
            f"CAST({p} AS DOUBLE) AS propensity",
        ]
        for c in numeric:
            if types[c] not in (
                "DOUBLE",
                "FLOAT",
                "BIGINT",
                "INTEGER",
                "SMALLINT",
                "TINYINT",
                "HUGEINT",
                "UBIGINT",
                "UINTEGER",
                "BOOLEAN",
            ) and not types[c].startswith("DECIMAL"):
                raise InvalidInput(f"{path.name}: numeric column {c!r} holds {types[c]}")
            select.append(f"coalesce(CAST({_q(c)} AS DOUBLE), 0.0) AS {_q(c)}")
        if numeric:
            notes.append(f"{len(numeric)} numeric columns (missing values read as 0)")

        def hash_into(c: str, buckets: int) -> str:
            v = f"coalesce(CAST({_q(c)} AS VARCHAR), '')"
            return f"'h' || CAST(md5_number({v}) % {buckets} AS VARCHAR) AS {_q(c)}"

        for c in categorical:
            text = f"coalesce(CAST({_q(c)} AS VARCHAR), '')"
            counts = con.execute(
                f"SELECT {text} AS v, count(*) AS k FROM src GROUP BY v ORDER BY k DESC, v "
                f"LIMIT {spec.max_categories + 1}"
            ).fetchall()
            if len(counts) > spec.max_categories:
                distinct = int(
                    con.execute(f"SELECT count(DISTINCT {text}) FROM src").fetchone()[0]  # type: ignore[index]
                )
                select.append(hash_into(c, spec.max_categories))
                cats = [f"h{k}" for k in range(spec.max_categories)]
                notes.append(
                    f"{c}: {distinct} values, more than --max-categories "
                    f"{spec.max_categories}: hashed into {spec.max_categories} buckets"
                )
            else:
                select.append(f"{text} AS {_q(c)}")
                cats = [str(v) for v, _ in counts]
                notes.append(f"{c}: {len(cats)} values, dictionary-encoded")
            schema.append({"name": c, "type": "category", "default": "", "categories": cats})
        for c in hashed:
            select.append(hash_into(c, spec.hash_buckets))
            cats = [f"h{k}" for k in range(spec.hash_buckets)]
            schema.append({"name": c, "type": "category", "default": "", "categories": cats})
            notes.append(f"{c}: hashed into {spec.hash_buckets} buckets")
        actions = [
            str(x[0])
            for x in con.execute(
                f"SELECT DISTINCT CAST({a} AS VARCHAR) FROM src ORDER BY 1"
            ).fetchall()
        ]
        logs.mkdir(parents=True, exist_ok=True)
        tmp = logs / f".{name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            rows = tmp / "rows.parquet"
            con.execute(
                f"COPY (SELECT {', '.join(select)} FROM src ORDER BY rn) TO "
                f"{_lit(str(rows))} (FORMAT PARQUET, COMPRESSION ZSTD)"
            )
            meta = {
                "format": FORMAT,
                "name": name,
                "source": str(path),
                "rows": n,
                "actions": actions,
                "schema": schema,
                "notes": notes,
                "sha256": hashlib.sha256(rows.read_bytes()).hexdigest(),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if out.exists():
                old = logs / f".{name}.{os.getpid()}.old"
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_log(data_dir, name)


def load_log(data_dir: str | Path, name: str) -> ImportedLog:
    """The imported log ``name``, checked against its sha256. NotFound if there is none;
    InvalidInput if it is in an older format or its rows no longer match."""
    if not _NAME.match(name):
        raise InvalidInput(f"log name {name!r} must be a lowercase identifier")
    folder = Path(data_dir) / "logs" / name
    if not (folder / "meta.json").exists():
        raise NotFound(f"no imported log {name!r} (offerloop logs import FILE --name {name})")
    meta = json.loads((folder / "meta.json").read_text())
    rows = folder / "rows.parquet"
    if meta.get("format") != FORMAT:
        raise InvalidInput(f"log {name!r} is in format {meta.get('format')!r}; import it again")
    if hashlib.sha256(rows.read_bytes()).hexdigest() != meta["sha256"]:
        raise InvalidInput(f"log {name!r}: rows.parquet does not match its sha256; import again")
    table = read_table(rows)
    names = [s["name"] for s in meta["schema"]]
    cols = [np.asarray(table[c]).tolist() for c in names]
    features = (
        [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]
        if names
        else [{} for _ in range(len(table["action"]))]
    )
    data = LoggedData(
        features=features,
        offers=[str(x) for x in np.asarray(table["action"]).tolist()],
        rewards=np.asarray(table["reward"], dtype=np.float64),
        propensities=np.asarray(table["propensity"], dtype=np.float64),
        ts=np.asarray(table["ts"], dtype=np.float64),
    )
    specs = [{**s, "categories": s.get("categories", [])} for s in meta["schema"]]
    return ImportedLog(
        name, data, list(meta["actions"]), Encoder(specs), meta["source"], list(meta["notes"])
    )


def warm_start(
    data_dir: str | Path, names: Sequence[str], offers: Sequence[str], features: Sequence[str]
) -> tuple[LoggedData | None, list[str]]:
    """The rows of imported logs ``names`` as training data for a campaign whose offers are
    ``offers`` and whose features are ``features`` (setting ``warm_start_logs``): every
    logged action must be one of the offers; columns named like a feature are used, the
    others ignored, missing features take their defaults. Returns the rows (None without
    logs) and a note per log."""
    parts: list[LoggedData] = []
    notes: list[str] = []
    known, wanted = set(offers), set(features)
    for name in names:
        log = load_log(data_dir, name)
        unknown = sorted(set(log.actions) - known)
        if unknown:
            raise InvalidInput(
                f"warm-start log {name!r} logs actions that are not offers of the campaign: "
                f"{', '.join(unknown[:5])}"
            )
        used = [f for f in log.encoder.feature_names if f in wanted]
        rows = [{k: v for k, v in r.items() if k in wanted} for r in log.data.features]
        d = log.data
        parts.append(LoggedData(rows, d.offers, d.rewards, d.propensities, d.ts))
        notes.append(f"{name}: {len(d)} imported decisions, features {', '.join(used) or 'none'}")
    return (LoggedData.concat(parts) if parts else None), notes
