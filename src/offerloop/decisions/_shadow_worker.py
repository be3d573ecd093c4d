"""Shadow scoring in a child process (setting ``shadow_scoring = "process"``).

The serving process sends, per batch, ``[decision_id, campaign, logged feature row, shown
index, [shadow versions]]`` (JSON frames over the child's stdin; no pickles): the rows it
holds in memory, so the child never reads back what was just written. The child loads each
shadow version from the registry once (its sha256 checked, as every load; compiled to
native code where possible), scores, appends the scores to the decisions and answers with
counts, which the serving process adds to its
metrics. The child exits when its input closes, so it never outlives the service (not even
a ``kill -9`` of it). If it dies, the batch's shadow scores are lost (derived data,
counted) and the next batch starts a new child.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from offerloop._errors import BackendUnavailable
from offerloop._metrics import Metrics
from offerloop._settings import Settings
from offerloop.backends import Backend
from offerloop.policies import Policy
from offerloop.registry import Registry

__all__ = ["WorkerSink"]

_REPLY_TIMEOUT = 120.0  # seconds: the first batch waits for the child to import and load


class WorkerSink:
    """The serving side: owns the child process (a fresh interpreter that runs ``_main`` of
    this module, so it never re-runs the parent's main module) and talks to it in
    length-prefixed JSON frames over its stdin and stdout."""

    def __init__(self, settings: Settings, metrics: Metrics, seed: int | None) -> None:
        self._settings = json.dumps(settings.to_doc())
        self.metrics = metrics
        self._seed = None if seed is None else seed + 1
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._kill()
        env = {**os.environ, "OFFERLOOP_SHADOW_WORKER_SEED": json.dumps(self._seed)}
        self._proc = subprocess.Popen(
            # not `-m`: the package imports this module first, and runpy would warn that it
            # is about to run a module already imported
            [sys.executable, "-c", "from offerloop.decisions._shadow_worker import _main; _main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.restarts += 1
        assert self._proc.stdin is not None
        _send(self._proc.stdin, self._settings.encode())
        return self._proc

    def score(self, items: Sequence[Any]) -> int:
        """Send the batch (ids, campaigns, rows, shown offers, shadow versions) to the child
        and add the counts it answers to this process's metrics; a dead or silent child
        costs the batch's scores (counted) and is started again next time."""
        batch = [
            [it.decision_id, it.campaign, dict(it.row), it.shown, [v for v, _ in it.shadows]]
            for it in items
        ]
        try:
            proc = self._start()
            assert proc.stdin is not None
            assert proc.stdout is not None
            _send(proc.stdin, json.dumps(batch).encode())
            reply = json.loads(_recv(proc.stdout, _REPLY_TIMEOUT))
        except Exception:  # the child died, hung or answered nonsense: a new one next time
            self.metrics.backend_errors.labels("shadow_worker", "score").inc()
            self._kill()
            return 0
        for (campaign, version), n in _pairs(reply["scored"]):
            self.metrics.shadow_scores.labels(campaign, version).inc(n)
        for (campaign, version), n in _pairs(reply["errors"]):
            self.metrics.policy_errors.labels(campaign, version, "shadow").inc(n)
        if reply["database_errors"]:
            self.metrics.backend_errors.labels("database", "add_shadows").inc(
                reply["database_errors"]
            )
        return int(reply["decisions"])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()  # the child sees end of input and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        """Stop the child process."""
        self._kill()


def _send(f: IO[bytes], payload: bytes) -> None:
    f.write(struct.pack(">I", len(payload)) + payload)
    f.flush()


def _read_exactly(f: IO[bytes], n: int, deadline: float | None) -> bytes:
    buf = b""
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([f], [], [], left)[0]:
                raise TimeoutError("the shadow worker did not answer in time")
        chunk = os.read(f.fileno(), n - len(buf))
        if not chunk:
            raise EOFError("the shadow worker closed its output")
        buf += chunk
    return buf


def _recv(f: IO[bytes], timeout: float | None = None) -> bytes:
    deadline = None if timeout is None else time.monotonic() + timeout
    (n,) = struct.unpack(">I", _read_exactly(f, 4, deadline))
    return _read_exactly(f, n, deadline)


def _pairs(d: dict[str, int]) -> list[tuple[tuple[str, str], int]]:
    return [((k.split("\x00")[0], k.split("\x00")[1]), n) for k, n in d.items()]


def _main() -> None:
    """The child: score batches until its input ends (the service closed it or died)."""
    from offerloop._clock import SystemClock
    from offerloop.backends import open_backend

    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(10)  # background work: the serving process (and Redis) get the CPU first
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the channel
    try:
        doc = json.loads(_recv(stdin))
    except EOFError:
        return
    settings = Settings(**doc)
    seed = json.loads(os.environ.get("OFFERLOOP_SHADOW_WORKER_SEED", "null"))
    # the service migrated the schema; a worker never creates one (a dropped schema or a
    # deleted data directory stays gone)
    backend = open_backend(settings, migrate=False)
    worker = _Worker(settings, backend, Registry(backend, SystemClock()), seed)
    try:
        while True:
            try:
                batch = json.loads(_recv(stdin))
            except EOFError:
                return
            _send(stdout, json.dumps(worker.score(batch)).encode())
    finally:
        backend.close()


def _die_with_parent() -> None:
    """Ask the kernel to end this process when its parent dies (Linux ``PR_SET_PDEATHSIG``),
    even while it is busy: closing stdin is only noticed between batches."""
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


class _Worker:
    def __init__(self, settings: Settings, backend: Backend, registry: Registry, seed: int | None):
        self.settings = settings
        self.backend = backend
        self.registry = registry
        self.rng = np.random.default_rng(seed)
        self.policies: dict[str, Policy | None] = {}

    def _policy(self, version: str) -> Policy | None:
        if version not in self.policies:
            if len(self.policies) > 64:
                self.policies.clear()
            try:
                policy = self.registry.load(version)
            except Exception:  # unloadable: out of service, counted per row
                self.policies[version] = None
                return None
            if self.settings.compile_models:
                with contextlib.suppress(Exception):  # LightGBM's predictor scores instead
                    policy.compile(self.settings.path / "compiled")
            self.policies[version] = policy
        return self.policies[version]

    def score(self, batch: list[list[Any]]) -> dict[str, Any]:
        from offerloop.decisions._shadows import score_shadows

        errors: dict[str, int] = {}
        database_errors = 0
        items: list[tuple[str, str, dict[str, Any], int, Sequence[str]]] = []
        versions: list[list[str]] = []
        for decision_id, campaign, row, shown, names in batch:
            offers = _offers(campaign, self.settings)
            items.append((decision_id, campaign, row, shown, offers))
            versions.append(names)
            for v in names:
                self._policy(v)

        def on_error(campaign: str, version: str) -> None:
            key = f"{campaign}\x00{version}"
            errors[key] = errors.get(key, 0) + 1

        scores = score_shadows(items, self.policies, versions, self.rng, on_error)
        campaign_of = {it[0]: it[1] for it in items}
        scored: dict[str, int] = {}
        for did, choices in scores.items():
            for ch in choices:
                key = f"{campaign_of[did]}\x00{ch.version}"
                scored[key] = scored.get(key, 0) + 1
        stored = {k: v for k, v in scores.items() if v}
        try:
            self.backend.add_shadows(stored)
        except BackendUnavailable:
            database_errors += 1
            stored = {}
        return {
            "decisions": len(stored),
            "scored": scored,
            "errors": errors,
            "database_errors": database_errors,
        }


_OFFERS: dict[str, tuple[str, ...]] = {}


def _offers(campaign: str, settings: Settings) -> tuple[str, ...]:
    """The campaign's offer ids in campaign order (the order policies score in)."""
    if not _OFFERS:
        from offerloop.campaigns import default_campaign_path, load_campaigns

        paths = settings.campaigns or (str(default_campaign_path()),)
        for c in load_campaigns(paths).values():
            _OFFERS[c.id] = tuple(c.offer_ids)
    return _OFFERS[campaign]


if __name__ == "__main__":
    _main()
