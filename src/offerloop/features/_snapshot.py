"""Snapshots of the in-process online state: a restart reads one file and the log's tail
instead of replaying the whole event log.

A snapshot holds every player's state, the folded-event marks and the log cursor
(``features._online.Cursor``) as of one moment. Restoring it and letting the follower
(``features._follow``) fold the events stored after the cursor gives the same state as a
full replay, because folding is idempotent per event sequence number.

The file is the body, one line per player: the player id as a JSON string, a tab, and the
player's state as JSON (``StateCodec``); then one last line of JSON, the trailer (last
because it checksums what comes before it). Loading splits the lines and keeps each state as
its JSON, decoded on the player's first read (``InMemoryOnlineStore``): a restart costs
reading the file and checking its checksum, however many players it holds, and a state no
request needs is never decoded (nor re-encoded by the next snapshot). Writing encodes
``CHUNK`` players at a time and yields between chunks, so the serving threads keep running.
The trailer names the format
and its version, the feature definitions' digest, the cursor and marks, the number of
players, and the body's length and sha256. A snapshot is written to a temporary file,
fsynced and renamed over the previous one (atomic: a crash leaves the old one whole). On
load, a different format version or feature digest, a body whose length or checksum does
not match, or a cursor ahead of the log (the log was replaced or restored from an older
backup) makes the snapshot unusable: the caller rebuilds from the log and says why.
Snapshots are JSON, never pickle: a file on disk is not trusted to run code.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from offerloop.features._online import Cursor, InMemoryOnlineStore, PlayerState, StateCodec

__all__ = [
    "FORMAT",
    "VERSION",
    "SnapshotInfo",
    "SnapshotUnusable",
    "read_snapshot",
    "write_snapshot",
]

FORMAT = "offerloop-online-snapshot"
VERSION = 1
CHUNK = 1000  # players per body line


class SnapshotUnusable(Exception):
    """The snapshot cannot be used (the message says why); rebuild from the log."""


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    players: int
    bytes: int
    seconds: float
    cursor: Cursor


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while many long-lived objects are built (a rebuild,
    a snapshot load): its passes would scan them again and again for nothing."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def write_snapshot(
    store: InMemoryOnlineStore, codec: StateCodec, digest: str, path: Path, now: float
) -> SnapshotInfo:
    """Write the store's state to ``path`` atomically; returns what was written. Raises
    OSError when the file cannot be written (the previous snapshot stays)."""
    started = time.perf_counter()
    states, marks, cursor = store.snapshot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    body = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as f:
            players = list(states.items())
            for i in range(0, len(players), CHUNK):
                lines = []
                for pid, st in players[i : i + CHUNK]:
                    raw = st if isinstance(st, bytes) else codec.encode(st)
                    lines.append(json.dumps(pid).encode() + b"\t" + raw + b"\n")
                chunk = b"".join(lines)
                body.update(chunk)
                size += len(chunk)
                f.write(chunk)
                time.sleep(0)  # let the serving threads run between chunks
            trailer = {
                "format": FORMAT,
                "version": VERSION,
                "features_sha256": digest,
                "cursor": json.loads(cursor.to_json()),
                "marks": sorted(marks),
                "players": len(players),
                "body_bytes": size,
                "body_sha256": body.hexdigest(),
                "written_at": now,
            }
            f.write(json.dumps(trailer, separators=(",", ":")).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # the rename is durable once the directory is
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return SnapshotInfo(path, len(states), size, time.perf_counter() - started, cursor)


def read_snapshot(
    path: Path, digest: str, last_seq: int
) -> tuple[dict[str, PlayerState | bytes], set[int], Cursor, SnapshotInfo]:
    """The states (as JSON, for ``InMemoryOnlineStore.restore`` to decode on first use),
    marks and cursor of a snapshot made under the feature definitions of
    ``digest``, of a log whose newest sequence number is ``last_seq``. Raises
    SnapshotUnusable naming the reason (FileNotFoundError when there is none)."""
    started = time.perf_counter()
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):
        raise SnapshotUnusable("it was cut short (no trailer)")
    cut = raw.rfind(b"\n", 0, len(raw) - 1) + 1  # where the trailer starts
    body = memoryview(raw)[:cut]  # checked and split without a copy of its own
    try:
        header = json.loads(raw[cut:])
    except ValueError:
        raise SnapshotUnusable("its trailer is not JSON (cut short?)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotUnusable("not an offerloop snapshot")
    if header.get("version") != VERSION:
        raise SnapshotUnusable(f"format version {header.get('version')}, not {VERSION}")
    if header.get("features_sha256") != digest:
        raise SnapshotUnusable("made under other feature definitions")
    if len(body) != header.get("body_bytes") or (
        hashlib.sha256(body).hexdigest() != header.get("body_sha256")
    ):
        raise SnapshotUnusable("its body does not match its checksum (truncated or changed)")
    floor, scan, holes = header["cursor"]
    cursor = Cursor(int(floor), int(scan), {int(s): float(t) for s, t in holes})
    if cursor.scan > last_seq:
        raise SnapshotUnusable(
            f"it has read the log up to event {cursor.scan}, but the log ends at {last_seq} "
            "(a log replaced or restored from an older backup)"
        )
    states: dict[str, PlayerState | bytes] = {}
    try:
        for line in raw.splitlines()[:-1]:  # every line but the trailer
            pid, tab, state = line.partition(b"\t")
            if not tab or not state.startswith(b"["):
                raise ValueError("a line is not <player id>\\t<state>")
            states[json.loads(pid)] = state
    except ValueError as exc:
        raise SnapshotUnusable(f"a line cannot be read: {exc}") from None
    if len(states) != header.get("players"):
        raise SnapshotUnusable(f"{len(states)} players, not {header.get('players')}")
    marks = {int(m) for m in header.get("marks", [])}
    info = SnapshotInfo(path, len(states), len(body), time.perf_counter() - started, cursor)
    return states, marks, cursor, info
