"""The columnar event store: the event log as typed Parquet columns, for the offline engine.

The log (``backends.EventLog``) keeps events as clients sent them, with their properties as
JSON text: right for an append-only record, slow for a training set over millions of events
(each scan re-reads the whole SQLite file or PostgreSQL table and pulls values out of JSON,
and joins on text player keys). This store follows the log and keeps the same events as
columns:

* ``pkey`` an integer player key (one per player id, never reused), ``seq`` the log's
  sequence number, ``type``, ``ts``, ``received_at``, ``event_id``;
* for every event property a feature reads (as its value or in a ``where`` condition), two
  typed columns: ``n:<property>`` (DOUBLE, the value when it is a number, never a boolean)
  and ``s:<property>`` (VARCHAR, when it is a string); NULL otherwise. This is exactly how
  the JSON path reads a property, so both give the same features by construction.

Files are Parquet, one directory per day of event time (``events/day=YYYYMMDD/``; the
offline engine skips days after the latest row it computes), sorted by player and time
within a file. Player keys live in ``players/`` files. ``manifest.json`` lists the files that
make up the store and the log cursor they cover; it is replaced atomically (temporary file,
fsync, rename), so a reader always sees a whole store and a crash mid-sync leaves the
previous one: files the manifest does not list are removed when the store is next opened.

:meth:`ColumnarStore.sync` appends the events stored after the cursor (read through the
backend protocol, so every backend works the same way). Where the log may show a gap that a
transaction in flight fills later (``EventLog.transient_gaps``: PostgreSQL), the missing
sequence numbers are kept as holes, re-read at every sync and given up after ``horizon``
seconds, as ``features._follow`` does. Many small files are merged per day by
:meth:`ColumnarStore.compact` (the service does both in the background); a replaced file is
deleted only after ``retire_seconds``, so a query that listed it can still read it. One
writer at a time: a thread lock and an OS file lock (``.lock``) around sync and compaction.

A feature set that reads a property the store has no column for (a new feature) makes the
store start over from the beginning of the log (``reset_reason`` says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from numpy.typing import NDArray

from offerloop.backends import EventLog, EventRecord
from offerloop.features._defs import FeatureSet, properties_read
from offerloop.features._follow import next_holes

__all__ = ["ColumnarStore", "SyncResult", "columnar_properties"]

FORMAT = "offerloop-columnar-events"
VERSION = 1
MANIFEST = "manifest.json"
DAY = 86400.0
FLUSH_ROWS = 1_000_000  # events gathered before they are written out


def columnar_properties(features: FeatureSet) -> list[str]:
    """Every event property the features read, as a value or in a condition, in order."""
    return list(dict.fromkeys(p for f in features for p in properties_read(f)))


def number_column(prop: str) -> str:
    return f"n:{prop}"


def string_column(prop: str) -> str:
    return f"s:{prop}"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class SyncResult:
    events: int  # events appended by this sync
    players: int  # new player keys
    files: int  # files written
    holes: int  # sequence numbers still awaited (transient gaps)


@dataclass(frozen=True)
class _File:
    path: str  # relative to the store's root
    day: int  # days since the epoch (UTC) of the events' ts
    rows: int

    def doc(self) -> dict[str, Any]:
        return {"path": self.path, "day": self.day, "rows": self.rows}


class ColumnarStore:
    """Events as typed columns in day-partitioned Parquet files; see the module doc."""

    def __init__(
        self,
        root: str | Path,
        properties: Sequence[str],
        *,
        wall: Callable[[], float] = time.time,
        horizon: float = 600.0,
        compact_files: int = 8,
        retire_seconds: float = 3600.0,
    ) -> None:
        self.root = Path(root)
        # real time, whatever a service's injected clock says: transactions in flight and
        # queries reading a replaced file last real seconds (as in features._follow)
        self.wall = wall
        self.horizon = horizon
        self.compact_files = compact_files
        self.retire_seconds = retire_seconds
        self.reset_reason = ""
        self._lock = threading.Lock()  # the file list, as readers see it
        self._write_lock = threading.Lock()  # one sync or compaction at a time
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(refresh=False):
            self._open(list(properties))

    # -- state -----------------------------------------------------------------------------
    def _open(self, needed: list[str]) -> None:
        doc = self._read_manifest()
        if doc is not None and not set(needed) <= set(doc["properties"]):
            missing = sorted(set(needed) - set(doc["properties"]))
            self.reset_reason = f"no columns for {', '.join(missing)}: rebuilt from the log"
            doc = None
        self.gen = -1
        self.scan = 0
        self.holes: dict[int, float] = {}
        self._files: list[_File] = []
        self._retired: list[tuple[str, float]] = []
        self._players: dict[str, int] = {}
        self._player_files: list[str] = []
        if doc is None:
            for sub in ("events", "players"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
            self.properties: list[str] = needed
            self._write_manifest()
        else:
            self._adopt(doc)
        self._remove_orphans()

    def _adopt(self, doc: dict[str, Any]) -> None:
        """Take the manifest's state (written by this process or another sharing the
        directory); player files are append-only, so only new ones are read."""
        self.gen = int(doc["gen"])
        self.properties = list(doc["properties"])
        self.scan = int(doc["scan"])
        self.holes = {int(k): float(v) for k, v in doc["holes"].items()}
        with self._lock:
            self._files = [_File(**f) for f in doc["files"]]
        self._retired = [(p, float(t)) for p, t in doc["retired"]]
        new = [p for p in doc["player_files"] if p not in set(self._player_files)]
        self._load_players(new)
        self._player_files += new

    def _refresh(self) -> None:
        """Catch up with a manifest another process wrote since this one last looked."""
        doc = self._read_manifest()
        if doc is not None and int(doc["gen"]) != self.gen:
            self._adopt(doc)

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.reset_reason = f"{path} unreadable ({exc}): rebuilt from the log"
            return None
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            self.reset_reason = (
                f"{path} is {doc.get('format')} version {doc.get('version')}, not {FORMAT} "
                f"version {VERSION}: rebuilt from the log"
            )
            return None
        return dict(doc)

    def _load_players(self, files: Sequence[str]) -> None:
        if not files:
            return
        paths = [str(self.root / p) for p in files]
        with duckdb.connect() as con:
            got = con.execute(
                "SELECT player_id, pkey FROM read_parquet($files)", {"files": paths}
            ).fetchnumpy()
        self._players.update(zip(got["player_id"].tolist(), got["pkey"].tolist(), strict=True))

    def _remove_orphans(self) -> None:
        """Files no manifest lists: written by a sync or compaction that did not finish."""
        known = {f.path for f in self._files} | set(self._player_files)
        known |= {p for p, _ in self._retired}
        for sub in ("events", "players"):
            base = self.root / sub
            if not base.exists():
                continue
            for path in base.rglob("*.parquet"):
                if str(path.relative_to(self.root)) not in known:
                    path.unlink(missing_ok=True)
            for d in sorted(base.glob("day=*")):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty

    def _write_manifest(self) -> None:
        self.gen += 1
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "gen": self.gen,
            "properties": self.properties,
            "scan": self.scan,
            "holes": {str(k): v for k, v in sorted(self.holes.items())},
            "files": [f.doc() for f in self._files],
            "player_files": self._player_files,
            "retired": [[p, t] for p, t in self._retired],
            "events": sum(f.rows for f in self._files),
            "players": len(self._players),
        }
        tmp = self.root / (MANIFEST + ".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / MANIFEST)

    @contextlib.contextmanager
    def _locked(self, refresh: bool = True) -> Iterator[None]:
        with self._write_lock, open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if refresh:
                    self._refresh()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- what readers see --------------------------------------------------------------------
    def files(self, until: float | None = None) -> list[Path]:
        """The store's event files, only the days up to ``until`` (an event time) if given."""
        with self._write_lock:
            self._refresh()
        with self._lock:
            files = list(self._files)
        last = None if until is None else int(until // DAY)
        return [self.root / f.path for f in files if last is None or f.day <= last]

    def player_keys(self, player_ids: Sequence[str]) -> NDArray[np.int64]:
        """Each player's integer key; -1 for a player the store has no event of."""
        get = self._players.get
        return np.fromiter((get(p, -1) for p in player_ids), np.int64, len(player_ids))

    def player_ids(self) -> NDArray[Any]:
        """Every player id the store has, at the index of its key."""
        ids: NDArray[Any] = np.empty(len(self._players), dtype=object)
        for pid, key in list(self._players.items()):
            ids[key] = pid
        return ids

    def __len__(self) -> int:
        with self._lock:
            return sum(f.rows for f in self._files)

    # -- writing ---------------------------------------------------------------------------
    def sync(self, log: EventLog, batch: int = 50_000) -> SyncResult:
        """Append the events the log stored after the cursor (and those filling holes)."""
        with self._locked():
            return self._sync(log, batch)

    def _sync(self, log: EventLog, batch: int) -> SyncResult:
        now = self.wall()
        chunk = _Chunk(self.properties)
        written: list[_File] = []
        new_players: dict[str, int] = {}
        scan, holes = self.scan, self.holes
        try:
            if holes:
                found = log.events_at(sorted(holes))
                holes = next_holes(holes, found, scan, [], now, self.horizon, False)
                self._add(chunk, found, new_players)
            while True:
                events = log.events_after(scan, batch)
                if not events:
                    break
                holes = next_holes(holes, [], scan, events, now, self.horizon, log.transient_gaps)
                scan = events[-1].seq
                self._add(chunk, events, new_players)
                if len(chunk) >= FLUSH_ROWS:
                    written += self._flush(chunk)
                    chunk = _Chunk(self.properties)
            written += self._flush(chunk)
            player_file = self._write_players(new_players)
        except BaseException:
            for f in written:
                (self.root / f.path).unlink(missing_ok=True)
            for p in new_players:
                self._players.pop(p, None)
            raise
        moved = scan != self.scan or holes != self.holes
        self.scan, self.holes = scan, holes
        with self._lock:
            self._files = self._files + written
        if player_file:
            self._player_files.append(player_file)
        if written or player_file or moved:
            self._write_manifest()
        return SyncResult(sum(f.rows for f in written), len(new_players), len(written), len(holes))

    def _add(self, chunk: _Chunk, events: Sequence[EventRecord], new: dict[str, int]) -> None:
        players = self._players
        keys = []
        for e in events:
            k = players.get(e.player_id)
            if k is None:
                k = players[e.player_id] = new[e.player_id] = len(players)
            keys.append(k)
        chunk.add(events, keys)

    def _flush(self, chunk: _Chunk) -> list[_File]:
        if not len(chunk):
            return []
        cols = chunk.columns()
        days = np.floor(cols["ts"] / DAY).astype(np.int64)
        cols["day"] = days
        out = []
        tag = f"{self.scan:012d}-{_stamp()}"
        with duckdb.connect() as con:
            con.register("c", cols)
            select = ", ".join(
                ["pkey", "seq", "type", "ts", "received_at", "event_id"]
                + [
                    f"nullif(n{j}, 'NaN'::DOUBLE) AS {quoted(number_column(p))}, "
                    f"s{j} AS {quoted(string_column(p))}"
                    for j, p in enumerate(self.properties)
                ]
            )
            for day in np.unique(days).tolist():
                rel = f"events/day={_day_name(day)}/part-{tag}.parquet"
                path = self.root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"COPY (SELECT {select} FROM c WHERE day = {day} ORDER BY pkey, ts, seq) "
                    f"TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
                )
                out.append(_File(rel, day, int((days == day).sum())))
        return out

    def _write_players(self, new: dict[str, int]) -> str:
        if not new:
            return ""
        rel = f"players/part-{len(self._player_files):06d}-{_stamp()}.parquet"
        (self.root / "players").mkdir(exist_ok=True)
        cols = {
            "player_id": np.array(list(new), dtype=object),
            "pkey": np.array(list(new.values()), dtype=np.int64),
        }
        with duckdb.connect() as con:
            con.register("p", cols)
            con.execute(f"COPY p TO '{self.root / rel}' (FORMAT parquet)")
        return rel

    def compact(self) -> int:
        """Merge the days that have ``compact_files`` files or more into one file each, and
        delete files replaced more than ``retire_seconds`` ago. Returns the files merged."""
        with self._locked():
            now = self.wall()
            by_day: dict[int, list[_File]] = {}
            for f in self._files:
                by_day.setdefault(f.day, []).append(f)
            merged = 0
            files = list(self._files)
            for day, group in sorted(by_day.items()):
                if len(group) < max(2, self.compact_files):
                    continue
                rel = f"events/day={_day_name(day)}/compact-{self.scan:012d}-{_stamp()}.parquet"
                paths = [str(self.root / f.path) for f in group]
                with duckdb.connect() as con:
                    con.execute(
                        "COPY (SELECT * FROM read_parquet($files) ORDER BY pkey, ts, seq) "
                        f"TO '{self.root / rel}' (FORMAT parquet, COMPRESSION zstd)",
                        {"files": paths},
                    )
                files = [f for f in files if f not in group] + [
                    _File(rel, day, sum(f.rows for f in group))
                ]
                self._retired += [(f.path, now) for f in group]
                merged += len(group)
            keep = []
            for p, t in self._retired:
                if now - t >= self.retire_seconds:
                    (self.root / p).unlink(missing_ok=True)
                else:
                    keep.append((p, t))
            changed = merged or len(keep) != len(self._retired)
            with self._lock:
                self._files = sorted(files, key=lambda f: (f.day, f.path))
            self._retired = keep
            if changed:
                self._write_manifest()
                self._remove_orphans()
            return merged


class _Chunk:
    """Events gathered as columns before they are written."""

    def __init__(self, properties: Sequence[str]) -> None:
        self.properties = list(properties)
        self.pkey: list[int] = []
        self.seq: list[int] = []
        self.type: list[str] = []
        self.ts: list[float] = []
        self.received_at: list[float] = []
        self.event_id: list[str] = []
        self.num: list[list[float]] = [[] for _ in self.properties]
        self.text: list[list[str | None]] = [[] for _ in self.properties]

    def __len__(self) -> int:
        return len(self.seq)

    def add(self, events: Sequence[EventRecord], keys: Sequence[int]) -> None:
        self.pkey += keys
        self.seq += [e.seq for e in events]
        self.type += [e.type for e in events]
        self.ts += [e.ts for e in events]
        self.received_at += [e.received_at for e in events]
        self.event_id += [e.event_id for e in events]
        nan = float("nan")
        for j, p in enumerate(self.properties):
            num, text = self.num[j], self.text[j]
            for e in events:
                v = e.properties.get(p)
                if isinstance(v, str):
                    num.append(nan)
                    text.append(v)
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    num.append(float(v))
                    text.append(None)
                else:
                    num.append(nan)
                    text.append(None)

    def columns(self) -> dict[str, NDArray[Any]]:
        cols: dict[str, NDArray[Any]] = {
            "pkey": np.array(self.pkey, dtype=np.int64),
            "seq": np.array(self.seq, dtype=np.int64),
            "type": np.array(self.type, dtype=object),
            "ts": np.array(self.ts, dtype=np.float64),
            "received_at": np.array(self.received_at, dtype=np.float64),
            "event_id": np.array(self.event_id, dtype=object),
        }
        for j in range(len(self.properties)):
            cols[f"n{j}"] = np.array(self.num[j], dtype=np.float64)
            cols[f"s{j}"] = np.array(self.text[j], dtype=object)
        return cols


def _day_name(day: int) -> str:
    import datetime as dt

    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).strftime("%Y%m%d")


def _stamp() -> str:
    """Unique within the process and across processes sharing the directory."""
    return f"{os.getpid()}-{threading.get_ident() % 100000}-{os.urandom(4).hex()}"
