"""The online engine: per-player state updated as events are ingested, read in microseconds.

For each *stream* (an event type plus a filter) a player keeps

* a buffer of recent events, sorted by (ts, event_id), holding only the properties features
  read: windowed features aggregate over it at read time, so windows slide exactly;
* a summary of older events (count, sums, min, max, last value, distinct values, newest ts):
  lifetime features combine it with the buffer.

An event moves from the buffer into the summary once it is older than the stream's retention
(its longest finite window plus a margin), which bounds memory per player. Reads are as of
"now", which must not go backwards; the value read at ``t`` reflects exactly the events known
at ``t``, like the offline engine's.

The state lives behind :class:`OnlineStore`, so another store (Redis) implements only that;
this module holds the logic once.

Folding is idempotent on an event's sequence number in the log (``EventRecord.seq``): each
store keeps a *floor* (every event at or below it is folded) and each player's state the
sequence numbers folded above it, so an event folded at ingest and again by the follower that
catches the state up with the log (``features._follow``) counts once. Events without a
sequence number (``seq == 0``: never stored) are always folded.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from offerloop.backends import OFFER_OUTCOME, EventRecord
from offerloop.features._defs import (
    _UNITS,
    Aggregate,
    Context,
    Feature,
    FeatureSet,
    FeatureValue,
    Profile,
    SinceLast,
    StreamKey,
    property_of,
    stream_of,
)
from offerloop.features._values import as_number, as_string, distinct_key, matches

__all__ = [
    "FeatureReading",
    "InMemoryOnlineStore",
    "OnlineFeatures",
    "OnlineStore",
    "PlayerState",
    "StateCodec",
]

Entry = tuple[float, str, tuple[Any, ...]]  # (ts, event_id, values of the stream's properties)
MARGIN = 3600.0  # retention beyond the longest window; covers future-stamped events


@dataclass
class _Summary:
    """Aggregates of the events compacted out of a stream's buffer."""

    count: int = 0
    max_ts: float | None = None
    n: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    last_num: list[tuple[tuple[float, str], float] | None] = field(default_factory=list)
    last_str: list[tuple[tuple[float, str], str] | None] = field(default_factory=list)
    distinct: list[set[tuple[float | None, str | None]]] = field(default_factory=list)

    @classmethod
    def empty(cls, width: int) -> _Summary:
        return cls(
            0,
            None,
            [0] * width,
            [0.0] * width,
            [math.inf] * width,
            [-math.inf] * width,
            [None] * width,
            [None] * width,
            [set() for _ in range(width)],
        )

    def add(self, e: Entry) -> None:
        ts, eid, values = e
        self.count += 1
        self.max_ts = ts if self.max_ts is None else max(self.max_ts, ts)
        key = (ts, eid)
        for i, v in enumerate(values):
            x = as_number(v)
            if x is not None:
                self.n[i] += 1
                self.total[i] += x
                self.lo[i] = min(self.lo[i], x)
                self.hi[i] = max(self.hi[i], x)
                ln = self.last_num[i]
                if ln is None or key > ln[0]:
                    self.last_num[i] = (key, x)
            s = as_string(v)
            if s is not None:
                ls = self.last_str[i]
                if ls is None or key > ls[0]:
                    self.last_str[i] = (key, s)
            k = distinct_key(v)
            if k is not None:
                self.distinct[i].add(k)


@dataclass
class _Stream:
    buf: list[Entry]
    summary: _Summary

    def copy(self) -> _Stream:
        m = self.summary
        return _Stream(
            list(self.buf),
            _Summary(
                m.count,
                m.max_ts,
                list(m.n),
                list(m.total),
                list(m.lo),
                list(m.hi),
                list(m.last_num),
                list(m.last_str),
                [set(d) for d in m.distinct],
            ),
        )


@dataclass
class PlayerState:
    streams: dict[StreamKey, _Stream] = field(default_factory=dict)
    newest_received: float = -math.inf
    seqs: set[int] = field(default_factory=set)  # folded events' seqs above the store's floor

    def copy(self) -> PlayerState:
        """A copy a fold may change while readers keep the original: its own dict of
        streams and set of seqs, the streams themselves shared until the fold changes one
        (``OnlineFeatures._fold`` copies a stream before its first change)."""
        return PlayerState(dict(self.streams), self.newest_received, set(self.seqs))


# new state from (old state, the store's floor), or None: nothing to change
Change = Callable[[PlayerState | None, int], PlayerState | None]


@dataclass(frozen=True)
class Cursor:
    """Where a store stands in the event log (``features._follow``).

    ``floor``: every event with ``seq <= floor`` is folded, or is a gap known to stay empty.
    ``scan``: the follower has read every stored event up to here. ``holes``: sequence
    numbers in ``(floor, scan]`` missing when last read (a transaction may still commit
    them), with the wall time each was first missed.
    """

    floor: int = 0
    scan: int = 0
    holes: Mapping[int, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps([self.floor, self.scan, sorted(self.holes.items())])

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Cursor:
        if not raw:
            return cls()
        floor, scan, holes = json.loads(raw)
        return cls(int(floor), int(scan), {int(s): float(t) for s, t in holes})


class OnlineStore(Protocol):
    """Where per-player state lives. The embedded default is a dict in the process.

    Every method may raise ``BackendUnavailable``; a store outside the process must bound
    each call with a timeout."""

    def get(self, player_id: str) -> PlayerState | None:
        """The player's state (callers never change it: folds copy)."""
        ...

    def update_many(self, changes: Mapping[str, Change], marks: Sequence[int] = ()) -> None:
        """Replace each player's state by ``change(old, floor)`` (unchanged when it returns
        None) and record ``marks`` (sequence numbers now folded), all atomically: no update
        by another process or thread can be lost in between, and ``floor`` is the store's
        floor as of the same moment."""
        ...

    def folded(self, seqs: Sequence[int]) -> set[int]:
        """Which of these sequence numbers were recorded as folded (above the floor)."""
        ...

    def cursor(self) -> Cursor:
        """Where the store stands in the event log (an empty :class:`Cursor` before any advance)."""
        ...

    def advance(self, expected: Cursor, new: Cursor) -> bool:
        """Move the cursor from ``expected`` to ``new`` (False, and nothing changed, if it
        moved meanwhile) and forget the marks at or below the new floor."""
        ...

    def delete(self, player_id: str) -> None:
        """Forget one player's state (nothing to do if there is none)."""
        ...

    def clear(self) -> None:
        """Every player's state, the marks and the cursor."""
        ...


class InMemoryOnlineStore:
    """States in a dict of this process, replaced (never changed in place) by each update,
    so a reader on another thread always sees a whole state.

    After :meth:`restore` from a snapshot, a player's state may still be the snapshot's JSON
    (bytes): it is decoded on first use, so a restart costs the reading of one file, not the
    decoding of every player."""

    def __init__(self) -> None:
        self._states: dict[str, PlayerState | bytes] = {}
        self._marks: set[int] = set()
        self._cursor = Cursor()
        self._lock = threading.Lock()
        self._codec: StateCodec | None = None

    def _decode(self, player_id: str, raw: bytes) -> PlayerState:
        assert self._codec is not None
        st = self._codec.decode(raw)
        with self._lock:  # unless an update replaced it meanwhile
            if self._states.get(player_id) is raw:
                self._states[player_id] = st
        return st

    def get(self, player_id: str) -> PlayerState | None:
        """The player's state (None: none yet)."""
        st = self._states.get(player_id)
        if type(st) is bytes:
            return self._decode(player_id, st)
        return st  # type: ignore[return-value]

    def update_many(self, changes: Mapping[str, Change], marks: Sequence[int] = ()) -> None:
        """Apply every change and record ``marks`` above the floor, under one lock."""
        with self._lock:
            floor = self._cursor.floor
            for pid, change in changes.items():
                old = self._states.get(pid)
                if type(old) is bytes:
                    assert self._codec is not None
                    old = self._codec.decode(old)
                new = change(old.copy() if old is not None else None, floor)  # type: ignore[union-attr]
                if new is not None:
                    self._states[pid] = new
            self._marks.update(s for s in marks if s > floor)

    def folded(self, seqs: Sequence[int]) -> set[int]:
        """Which of these sequence numbers are recorded as folded."""
        with self._lock:
            return {s for s in seqs if s in self._marks}

    def cursor(self) -> Cursor:
        """Where the store stands in the event log."""
        return self._cursor

    def advance(self, expected: Cursor, new: Cursor) -> bool:
        """Move the cursor to ``new`` if it is still ``expected`` (else False) and forget the marks
        at or below the new floor."""
        with self._lock:
            if self._cursor != expected:
                return False
            self._cursor = new
            self._marks = {s for s in self._marks if s > new.floor}
            return True

    def delete(self, player_id: str) -> None:
        """Forget one player's state."""
        with self._lock:
            self._states.pop(player_id, None)

    def clear(self) -> None:
        """Drop every player's state, the marks and the cursor."""
        with self._lock:
            self._states.clear()
            self._marks.clear()
            self._cursor = Cursor()

    def __len__(self) -> int:
        return len(self._states)

    def snapshot(self) -> tuple[dict[str, PlayerState | bytes], set[int], Cursor]:
        """Every state (decoded, or still the snapshot's JSON), the marks and the cursor as of
        one moment (states are replaced, never changed, so the copy of the dict is enough;
        ``features._snapshot`` writes it)."""
        with self._lock:
            return dict(self._states), set(self._marks), self._cursor

    def restore(
        self,
        states: dict[str, PlayerState | bytes],
        marks: set[int],
        cursor: Cursor,
        codec: StateCodec,
    ) -> None:
        """Replace everything by a snapshot's states (JSON ones decoded by ``codec`` on first
        use), marks and cursor."""
        with self._lock:
            self._codec = codec
            self._states = states
            self._marks = {m for m in marks if m > cursor.floor}
            self._cursor = cursor


@dataclass(frozen=True)
class _Plan:
    key: StreamKey
    properties: tuple[str, ...]
    retention: float


@dataclass(frozen=True)
class FeatureReading:
    value: FeatureValue
    newest_event_ts: float | None  # event time of the newest event the value reflects


class OnlineFeatures:
    """Applies events to per-player state and reads feature vectors from it."""

    def __init__(self, features: FeatureSet, store: OnlineStore | None = None) -> None:
        self.features = features
        self.store: OnlineStore = store or InMemoryOnlineStore()
        self._lock = threading.RLock()
        props: dict[StreamKey, list[str]] = {}
        windows: dict[StreamKey, float] = {}
        self._feature_stream: dict[str, StreamKey] = {}
        for f in features:
            key = stream_of(f)
            if key is None:
                continue
            self._feature_stream[f.name] = key
            props.setdefault(key, [])
            prop = property_of(f)
            if prop is not None and prop not in props[key]:
                props[key].append(prop)
            w = f.seconds if isinstance(f, Aggregate) else 0.0
            windows[key] = max(windows.get(key, 0.0), 0.0 if math.isinf(w) else w)
        self._plans = {k: _Plan(k, tuple(v), _retention(k, windows[k])) for k, v in props.items()}
        self._by_type: dict[str, list[_Plan]] = {}
        for plan in self._plans.values():
            self._by_type.setdefault(plan.key[0], []).append(plan)

    # -- writes --------------------------------------------------------------------------
    def apply(self, events: Iterable[EventRecord], now: float, *, once: bool = True) -> None:
        """Fold stored events into their players' state: one update of the store per batch,
        atomic per player. With ``once`` (the default), an event already folded (same
        ``seq``) is skipped and the folded ones are recorded; without, every event is folded
        (a replay into a cleared store, :meth:`rebuild`)."""
        by_player: dict[str, list[EventRecord]] = {}
        marks: list[int] = []
        for e in events:
            if once and e.seq:
                marks.append(e.seq)
            if e.type in self._by_type:
                by_player.setdefault(e.player_id, []).append(e)
        changes: dict[str, Change] = {
            pid: (
                (lambda st, floor, evs=evs: self._fold(st, evs, now, floor))  # type: ignore[misc]
                if once
                else (lambda st, _floor, evs=evs: self._fold(st, evs, now, -1))  # type: ignore[misc]
            )
            for pid, evs in by_player.items()
        }
        if not changes and not marks:
            return
        with self._lock:
            self.store.update_many(changes, marks)

    def _fold(
        self, st: PlayerState | None, events: Sequence[EventRecord], now: float, floor: int = 0
    ) -> PlayerState | None:
        if floor < 0:  # a replay: fold everything, record nothing
            new = list(events)
        else:
            done = st.seqs if st is not None else set()
            new = [e for e in events if not e.seq or (e.seq > floor and e.seq not in done)]
        if not new:
            return None  # folded already (at ingest, or by another process)
        st = st or PlayerState()
        if st.seqs and floor > 0:
            st.seqs = {s for s in st.seqs if s > floor}
        owned: set[StreamKey] = set()  # streams this fold copied or made (the rest are shared)
        for e in new:
            if e.seq and floor >= 0:
                st.seqs.add(e.seq)
            st.newest_received = max(st.newest_received, e.received_at)
            for plan in self._by_type[e.type]:
                if plan.key[1] and not matches(e.properties, plan.key[1]):
                    continue
                s = st.streams.get(plan.key)
                if s is None:
                    s = st.streams[plan.key] = _Stream([], _Summary.empty(len(plan.properties)))
                    owned.add(plan.key)
                elif plan.key not in owned:
                    s = st.streams[plan.key] = s.copy()  # readers keep the original
                    owned.add(plan.key)
                entry = (e.ts, e.event_id, tuple(e.properties.get(p) for p in plan.properties))
                horizon = now - plan.retention
                if e.ts < horizon:
                    s.summary.add(entry)  # late: outside every window from now on
                else:
                    _insort(s.buf, entry)
                _compact(s, horizon)
        return st

    def rebuild(self, events: Iterable[EventRecord], now: float, batch: int = 10_000) -> int:
        """Drop all state and replay ``events``; returns how many were read. (A store that
        follows a log rebuilds through ``features._follow.LogFollower.rebuild``, which also
        moves the store's cursor.)"""
        with self._lock:
            self.store.clear()
            n = 0
            chunk: list[EventRecord] = []
            for e in events:
                chunk.append(e)
                if len(chunk) >= batch:
                    self.apply(chunk, now, once=False)
                    n += len(chunk)
                    chunk = []
            self.apply(chunk, now, once=False)
            return n + len(chunk)

    # -- reads ---------------------------------------------------------------------------
    def newest_received(self, player_id: str) -> float | None:
        """When the newest event folded into this player's state was received (None: none)."""
        st = self.store.get(player_id)
        return st.newest_received if st is not None and st.newest_received > -math.inf else None

    def read(
        self,
        player_id: str,
        as_of: float,
        context: Mapping[str, Any] | None = None,
        external: Mapping[str, FeatureValue] | None = None,
    ) -> dict[str, FeatureValue]:
        """Every feature's value as of ``as_of``, by name (:meth:`read_detailed` without times)."""
        return {
            k: r.value for k, r in self.read_detailed(player_id, as_of, context, external).items()
        }

    def read_detailed(
        self,
        player_id: str,
        as_of: float,
        context: Mapping[str, Any] | None = None,
        external: Mapping[str, FeatureValue] | None = None,
    ) -> dict[str, FeatureReading]:
        """Each feature's value and the newest event time behind it."""
        return self.read_state(self.store.get(player_id), as_of, context, external)

    def read_state(
        self,
        st: PlayerState | None,
        as_of: float,
        context: Mapping[str, Any] | None = None,
        external: Mapping[str, FeatureValue] | None = None,
    ) -> dict[str, FeatureReading]:
        """:meth:`read_detailed` from a state the caller fetched (one store round trip)."""
        context = context or {}
        external = external or {}
        out: dict[str, FeatureReading] = {}
        for f in self.features:
            if isinstance(f, Context):
                out[f.name] = FeatureReading(f.coerce(context.get(f.key)), None)
                continue
            key = self._feature_stream.get(f.name)
            if key is None:  # sql / batch: supplied by their sources
                out[f.name] = FeatureReading(f.coerce(external.get(f.name)), None)
                continue
            s = st.streams.get(key) if st is not None else None
            if s is None:
                out[f.name] = FeatureReading(f.default, None)
                continue
            plan = self._plans[key]
            out[f.name] = _read(f, s, plan, as_of)
        return out


def _retention(key: StreamKey, window: float) -> float:
    """How long a stream keeps entries one by one. ``offer_outcome`` events are folded twice
    (at the decision, then from the log once committed): they stay individually long enough
    for the second fold to find them however fast a manual clock runs."""
    if key[0] == OFFER_OUTCOME:
        return max(window, 2 * 86400.0) + MARGIN
    return window + MARGIN


def _insort(buf: list[Entry], entry: Entry) -> None:
    """Insert in (ts, event id) order; an entry already there (same ts and event id: the
    same event folded again) is not inserted twice."""
    if not buf or entry[:2] > buf[-1][:2]:
        buf.append(entry)
        return
    lo, hi = 0, len(buf)
    key = entry[:2]
    while lo < hi:
        mid = (lo + hi) // 2
        if buf[mid][:2] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(buf) and buf[lo][:2] == key:
        return
    buf.insert(lo, entry)


def _compact(s: _Stream, horizon: float) -> None:
    buf = s.buf
    i = 0
    while i < len(buf) and buf[i][0] < horizon:
        s.summary.add(buf[i])
        i += 1
    if i:
        del buf[:i]


def _read(f: Feature, s: _Stream, plan: _Plan, as_of: float) -> FeatureReading:
    buf = s.buf
    # entries known at as_of: ts <= as_of (all stored entries were received by now >= as_of)
    end = len(buf)
    while end and buf[end - 1][0] > as_of:
        end -= 1
    if isinstance(f, SinceLast):
        last = buf[end - 1][0] if end else s.summary.max_ts
        if last is None:
            return FeatureReading(f.default, None)
        return FeatureReading((as_of - last) / _UNITS[f.unit], last)
    if isinstance(f, Profile):
        idx = plan.properties.index(f.attribute)
        pick = as_string if f.type == "category" else as_number
        for j in range(end - 1, -1, -1):
            v = pick(buf[j][2][idx])
            if v is not None:
                return FeatureReading(f.coerce(v), buf[j][0])
        sl = s.summary.last_str[idx] if f.type == "category" else s.summary.last_num[idx]
        return FeatureReading(f.coerce(sl[1]), sl[0][0]) if sl else FeatureReading(f.default, None)
    assert isinstance(f, Aggregate)
    w = f.seconds
    lifetime = math.isinf(w)
    start = 0
    if not lifetime:
        lo = as_of - w
        start = end
        while start and buf[start - 1][0] >= lo:
            start -= 1
    rows = buf[start:end]
    newest = rows[-1][0] if rows else (s.summary.max_ts if lifetime else None)
    value = _aggregate(f, rows, plan, s.summary if lifetime else None)
    if value is None:
        return FeatureReading(f.default, None)
    return FeatureReading(f.coerce(value), newest)


def _aggregate(f: Aggregate, rows: Sequence[Entry], plan: _Plan, summ: _Summary | None) -> Any:
    if f.agg == "count":
        n = len(rows) + (summ.count if summ else 0)
        return n or None
    i = plan.properties.index(f.property or "")
    raw = [r[2][i] for r in rows]
    if f.agg == "distinct_count":
        keys = {k for k in map(distinct_key, raw) if k is not None}
        if summ:
            keys |= summ.distinct[i]
        return len(keys) or None
    if f.agg == "last":
        pick = as_string if f.type == "category" else as_number
        for v in reversed(raw):
            x = pick(v)
            if x is not None:
                return x
        if summ:
            sl = summ.last_str[i] if f.type == "category" else summ.last_num[i]
            return sl[1] if sl else None
        return None
    nums = [x for x in map(as_number, raw) if x is not None]
    n = len(nums) + (summ.n[i] if summ else 0)
    if not n:
        return None
    if f.agg in ("sum", "mean"):
        total = sum(nums) + (summ.total[i] if summ else 0.0)
        return total if f.agg == "sum" else total / n
    if f.agg == "min":
        return min(nums + ([summ.lo[i]] if summ and summ.n[i] else []))
    return max(nums + ([summ.hi[i]] if summ and summ.n[i] else []))


class StateCodec:
    """PlayerState ⇄ JSON bytes, for stores outside the process (Redis). Streams are named by
    their definition, so state written under other feature definitions is never misread."""

    def __init__(self, features: FeatureSet) -> None:
        keys = {k for f in features if (k := stream_of(f)) is not None}
        self._ids = {k: repr(k) for k in keys}
        self._keys = {v: k for k, v in self._ids.items()}

    def encode(self, st: PlayerState) -> bytes:
        streams = {}
        for key, s in st.streams.items():
            m = s.summary
            streams[self._ids[key]] = [
                [[ts, eid, list(vals)] for ts, eid, vals in s.buf],
                [
                    m.count,
                    m.max_ts,
                    m.n,
                    m.total,
                    m.lo,
                    m.hi,
                    [None if x is None else [list(x[0]), x[1]] for x in m.last_num],
                    [None if x is None else [list(x[0]), x[1]] for x in m.last_str],
                    [sorted([list(t) for t in d], key=repr) for d in m.distinct],
                ],
            ]
        doc: list[Any] = [st.newest_received, streams]
        if st.seqs:
            doc.append(sorted(st.seqs))
        return json.dumps(doc, separators=(",", ":")).encode()

    def decode(self, raw: bytes) -> PlayerState:
        doc = json.loads(raw)
        newest, streams = doc[0], doc[1]
        st = PlayerState(newest_received=float(newest), seqs=set(doc[2]) if len(doc) > 2 else set())
        for sid, (buf, m) in streams.items():
            key = self._keys.get(sid)
            if key is None:
                continue  # a stream of older definitions: rebuild to fill new ones
            summary = _Summary(
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                [None if x is None else ((x[0][0], x[0][1]), x[1]) for x in m[6]],
                [None if x is None else ((x[0][0], x[0][1]), x[1]) for x in m[7]],
                [{(t[0], t[1]) for t in d} for d in m[8]],
            )
            entries = [(e[0], e[1], tuple(e[2])) for e in buf]
            st.streams[key] = _Stream(entries, summary)
        return st
