"""Batch sources: Parquet or CSV files of (player id, timestamp, columns) written by someone
else's job (a warehouse or lake export), point-in-time both ways.

A file is loaded when it lands (``poll``); the moment it was loaded is recorded in the
backend, so the offline engine knows what the online store knew at any time: a row counts at
``t`` when its timestamp and its file's load time are both ``<= t``. A feature's value is the
column's latest non-null value by (timestamp, load time, row).
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from offerloop._clock import parse_rfc3339
from offerloop._errors import InvalidInput
from offerloop.backends import LoadLog
from offerloop.features._defs import Batch, FeatureValue

__all__ = ["BatchSource", "BatchSources"]


@dataclass(frozen=True)
class _Row:
    ts: float
    loaded_at: float
    seq: int
    values: tuple[Any, ...]


def _ts(v: Any) -> float:
    if isinstance(v, np.datetime64):
        return float(v.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(v, str):
        return parse_rfc3339(v)
    return float(v)


class BatchSource:
    """All batch features reading the same files (same path and key columns)."""

    def __init__(self, features: Sequence[Batch], log: LoadLog) -> None:
        self.features = list(features)
        f0 = self.features[0]
        self.path, self.player_column, self.ts_column = f0.path, f0.player_column, f0.ts_column
        self.name = f"batch:{self.path}"
        self.columns = list(dict.fromkeys(f.column for f in self.features))
        self.log = log
        self._rows: dict[str, list[_Row]] = {}
        self._loaded: set[str] = set()
        self._seq = 0
        self._lock = threading.Lock()

    def _files(self) -> list[tuple[str, str]]:
        out = []
        for p in sorted(glob.glob(self.path)):
            st = os.stat(p)
            out.append((p, f"{p}|{st.st_mtime_ns}|{st.st_size}"))
        return out

    def poll(self, now: float) -> int:
        """Load files not loaded yet (recording when); returns how many were loaded."""
        known = dict(self.log.loads(self.name))
        n = 0
        for path, key in self._files():
            if key in self._loaded:
                continue
            loaded_at = known.get(key)
            if loaded_at is None:
                loaded_at = self.log.record_load(self.name, key, now)
            self._ingest(path, loaded_at)
            self._loaded.add(key)
            n += 1
        return n

    def _read(self, path: str) -> dict[str, Any]:
        reader = "read_parquet" if path.endswith(".parquet") else "read_csv_auto"
        cols = ", ".join(f'"{c}"' for c in [self.player_column, self.ts_column, *self.columns])
        try:
            con = duckdb.connect()
            try:
                lit = path.replace("'", "''")
                return con.execute(f"SELECT {cols} FROM {reader}('{lit}')").fetchnumpy()
            finally:
                con.close()
        except duckdb.Error as exc:
            raise InvalidInput(f"{self.name}: cannot read {path}: {exc}") from exc

    def _ingest(self, path: str, loaded_at: float) -> None:
        data = self._read(path)
        players = data[self.player_column]
        ts = data[self.ts_column]
        cols = [data[c] for c in self.columns]
        with self._lock:
            for i in range(len(players)):
                values = tuple(_plain(c, i) for c in cols)
                row = _Row(_ts(ts[i]), loaded_at, self._seq, values)
                self._seq += 1
                self._rows.setdefault(str(players[i]), []).append(row)
            for rows in self._rows.values():
                rows.sort(key=lambda r: (r.ts, r.loaded_at, r.seq))

    def lookup(self, player_id: str, as_of: float) -> dict[str, FeatureValue]:
        """Values as of ``as_of``; the online store asks at now, the offline engine at each
        decision's time: one function, so both agree."""
        rows = self._rows.get(player_id, [])
        out: dict[str, FeatureValue] = {}
        for f in self.features:
            j = self.columns.index(f.column)
            value = None
            for r in reversed(rows):
                if r.ts <= as_of and r.loaded_at <= as_of and r.values[j] is not None:
                    value = r.values[j]
                    break
            out[f.name] = f.coerce(value)
        return out


def _plain(col: Any, i: int) -> Any:
    if isinstance(col, np.ma.MaskedArray) and bool(np.ma.getmaskarray(col)[i]):
        return None
    v = col[i]
    return v.item() if isinstance(v, np.generic) else v


class BatchSources:
    def __init__(self, features: Sequence[Batch], log: LoadLog) -> None:
        groups: dict[tuple[str, str, str], list[Batch]] = {}
        for f in features:
            groups.setdefault((f.path, f.player_column, f.ts_column), []).append(f)
        self.sources = [BatchSource(g, log) for g in groups.values()]

    def poll(self, now: float) -> int:
        return sum(s.poll(now) for s in self.sources)

    def lookup(self, player_id: str, as_of: float) -> dict[str, FeatureValue]:
        out: dict[str, FeatureValue] = {}
        for s in self.sources:
            out.update(s.lookup(player_id, as_of))
        return out
