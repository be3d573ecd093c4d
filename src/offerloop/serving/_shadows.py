"""Shadow scoring off the request path.

A decision is answered (and logged) with the serving policy only; its row is queued here, and
a worker scores every shadow on the queued rows in batches (one ``act_batch`` per shadow,
which is also much cheaper per row than one call per decision) and appends the scores to the
logged decisions in one write. Shadow scores are derived data, recomputable from the logged
feature row: a crash loses at most the last ``interval`` of them, never a decision.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from offerloop._errors import BackendUnavailable
from offerloop.backends import DecisionLog, ShadowChoice
from offerloop.monitoring import Metrics
from offerloop.policies import Policy

__all__ = ["ShadowScorer"]


@dataclass(frozen=True)
class _Item:
    decision_id: str
    campaign: str
    row: dict[str, Any]
    shown: int  # index of the offer actually shown
    offers: tuple[str, ...]
    shadows: tuple[tuple[str, Policy], ...]


class ShadowScorer:
    def __init__(
        self,
        log: DecisionLog,
        metrics: Metrics,
        seed: int | None = None,
        interval: float = 0.05,
        max_batch: int = 512,
    ) -> None:
        self.log = log
        self.metrics = metrics
        self.interval = interval
        self.max_batch = max_batch
        self._rng = np.random.default_rng(None if seed is None else seed + 1)
        self._queue: list[_Item] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(
        self,
        decision_id: str,
        campaign: str,
        row: dict[str, Any],
        shown: int,
        offers: Sequence[str],
        shadows: tuple[tuple[str, Policy], ...],
    ) -> None:
        if not shadows:
            return
        with self._lock:
            self._queue.append(_Item(decision_id, campaign, row, shown, tuple(offers), shadows))
            n = len(self._queue)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="offerloop-shadows", daemon=True
                )
                self._thread.start()
        if n >= self.max_batch:
            self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Score and write everything queued now (callable from any thread); returns how
        many decisions got their shadow scores."""
        with self._flush_lock:
            with self._lock:
                items, self._queue = self._queue, []
            if not items:
                return 0
            scores: dict[str, list[ShadowChoice]] = {i.decision_id: [] for i in items}
            by_version: dict[str, tuple[Policy, list[_Item]]] = {}
            for it in items:
                for version, policy in it.shadows:
                    by_version.setdefault(version, (policy, []))[1].append(it)
            for version, (policy, group) in by_version.items():
                for it, q in zip(group, self._score(policy, group, version), strict=True):
                    if q is None:
                        continue
                    j = int(self._rng.choice(len(q), p=q))
                    scores[it.decision_id].append(
                        ShadowChoice(version, it.offers[j], float(q[j]), float(q[it.shown]))
                    )
                    self.metrics.shadow_scores.labels(it.campaign, version).inc()
            try:
                self.log.add_shadows({k: v for k, v in scores.items() if v})
            except BackendUnavailable:  # derived data: dropped, counted
                self.metrics.backend_errors.labels("database", "add_shadows").inc()
            return len(items)

    def _score(
        self, policy: Policy, group: list[_Item], version: str
    ) -> list[np.ndarray[Any, np.dtype[np.float64]] | None]:
        k = len(group[0].offers)
        try:
            p = np.asarray(policy.act_batch([it.row for it in group]), dtype=np.float64)
            if p.shape == (len(group), k) and np.isfinite(p).all() and (p >= 0).all():
                sums = p.sum(axis=1)
                if np.allclose(sums, 1.0, atol=1e-6):
                    return list(p / sums[:, None])
        except Exception:  # fall through: find the rows that fail, one by one
            pass
        out: list[np.ndarray[Any, np.dtype[np.float64]] | None] = []
        for it in group:
            try:
                q = np.asarray(policy.act(it.row), dtype=np.float64)
                ok = bool(
                    q.shape == (k,)
                    and np.isfinite(q).all()
                    and (q >= 0).all()
                    and abs(float(q.sum()) - 1.0) < 1e-6
                )
            except Exception:
                ok = False
            if ok:
                out.append(q / q.sum())
            else:  # a shadow that fails is left out of that decision, and counted
                self.metrics.policy_errors.labels(it.campaign, version, "shadow").inc()
                out.append(None)
        return out

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
