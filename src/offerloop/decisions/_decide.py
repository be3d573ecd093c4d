"""The decision path: features → serving policy (draw an offer) → durable log → answer; the
shadows score the same row afterwards (``decisions._shadows``)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from offerloop._clock import Clock
from offerloop._errors import BackendUnavailable, Conflict, NotFound
from offerloop._metrics import Metrics
from offerloop.backends import Backend, DecisionRecord
from offerloop.backends._journal import RecordJournal
from offerloop.campaigns import Campaign, Offer
from offerloop.decisions._shadows import ShadowScorer, ShadowSink
from offerloop.events import decision_token
from offerloop.features import FeatureValue
from offerloop.policies import ELIGIBLE, Policy, restrict_one
from offerloop.policies._compiled import Unsupported
from offerloop.registry import CANARY, RELEASED, SHADOW, Deployments, Registry

__all__ = [
    "CONTROL",
    "Decider",
    "Decision",
    "FeatureSource",
    "canary_bucket",
    "control_bucket",
    "new_decision_id",
    "ordinary",
]

CONTROL = "control"  # the mode and version of a decision for a player in the control group
# notes of a decision served as designed (what the campaign allowed), not of a fault
_ROUTINE = ("no eligible offer", "campaign not running", "caps:")


def ordinary(fallback: str) -> bool:
    """Whether a decision with this ``fallback`` note was served as its version would serve:
    no note, or only the campaign's eligibility, schedule and caps at work (the same for every
    arm), not a fault (a failed model, default features)."""
    return all(part.startswith(_ROUTINE) for part in fallback.split("; ") if part)


FeatureSource = Callable[[str, float, Mapping[str, Any]], dict[str, FeatureValue]]


@dataclass(frozen=True)
class Decision:
    record: DecisionRecord
    offer: Offer
    token: str = ""  # the signed decision token (setting decision_token_secret), or ""


@dataclass(frozen=True)
class _Live:
    generation: int
    released: tuple[str, Policy] | None
    shadows: tuple[tuple[str, Policy], ...]
    checked_at: float
    canary: tuple[str, Policy, float] | None = None


def canary_bucket(player_id: str, campaign: str) -> float:
    """A player's stable position in [0, 1) for a campaign: the canary serves players below
    its share, so a player keeps the same arm while the share is unchanged (and a player in
    a 10 % canary stays in it when the share grows to 20 %)."""
    digest = hashlib.sha256(f"{campaign}\x00{player_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def control_bucket(player_id: str, campaign: str) -> float:
    """A player's stable position in [0, 1) for a campaign's control group: players below the
    campaign's ``control_share`` are in it. Independent of :func:`canary_bucket` (another
    salt), so a control group is a random sample of every arm's players."""
    digest = hashlib.sha256(f"control\x00{campaign}\x00{player_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def new_decision_id(ts: float) -> str:
    """Time-ordered and unique across processes: milliseconds + 64 random bits."""
    return f"d{int(ts * 1000):013x}{secrets.token_hex(8)}"


class Decider:
    """The decision engine of one process: for a request, the player's features, the serving
    version (canary by a stable hash of the player, else the release), one draw from its
    probabilities, and the decision logged with that propensity (journaled first, or
    written through); shadows are scored after the answer. Deployment state is cached and
    re-read every ``refresh_seconds`` (or at once after :meth:`invalidate`); when the store
    of features cannot be read, ``default_features`` stand in (counted)."""

    def __init__(
        self,
        backend: Backend,
        features: FeatureSource,
        campaigns: Mapping[str, Campaign],
        registry: Registry,
        deployments: Deployments,
        clock: Clock,
        metrics: Metrics,
        refresh_seconds: float = 0.2,
        seed: int | None = None,
        default_features: FeatureSource | None = None,
        journal: RecordJournal[DecisionRecord] | None = None,
        journal_first: bool = False,
        shadow_sink: ShadowSink | None = None,
        compile_dir: Path | None = None,
        token_secret: str = "",
        compile_after: int = 0,
    ) -> None:
        self.compile_dir = compile_dir
        self.compile_after = compile_after
        self.token_secret = token_secret
        self.backend = backend
        self.features = features
        self.default_features = default_features
        self.journal = journal
        self.journal_first = journal_first and journal is not None
        self._db_down_until = 0.0  # circuit breaker: while open, skip the database at once
        self.shadows = ShadowScorer(
            backend,
            metrics,
            seed,
            sink=shadow_sink,
            before_flush=journal.flush if journal is not None else None,
        )
        self.campaigns = campaigns
        self.registry = registry
        self.deployments = deployments
        self.clock = clock
        self.metrics = metrics
        self.refresh_seconds = refresh_seconds
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._background = False
        self._compiling: weakref.WeakSet[Policy] = weakref.WeakSet()  # compiled or under way
        # decisions each loaded policy served here, until it is compiled (compile when hot)
        self._uses: weakref.WeakKeyDictionary[Policy, int] = weakref.WeakKeyDictionary()
        self._compile_lock = threading.Lock()
        self._compile_threads: list[threading.Thread] = []

    def campaign(self, campaign_id: str) -> Campaign:
        """A loaded campaign; NotFound (listing the known ones) otherwise."""
        try:
            return self.campaigns[campaign_id]
        except KeyError:
            raise NotFound(
                f"unknown campaign {campaign_id!r} (known: {', '.join(sorted(self.campaigns))})"
            ) from None

    def invalidate(self) -> None:
        """Forget the cached deployment state (the next decision re-reads it; in the
        background mode, re-read it now)."""
        if self._background:
            for campaign in list(self._live):
                with contextlib.suppress(BackendUnavailable):
                    self._live[campaign] = replace(self._live[campaign], generation=-1)
                    self.refresh(campaign)
            return
        self._live.clear()

    def live(self, campaign: str) -> _Live:
        """Deployment state, re-read at most every ``refresh_seconds`` of real time. If the
        backend cannot be read, the last known state keeps serving (and the fault is counted).
        A version whose artifact fails to load is left out (counted); a release that fails to
        load is replaced by uniform random over the offers (propensities stay exact).

        With :meth:`refresh_in_background` (``offerloop serve``), a decision never reads the
        backend: a background thread re-reads the state and this returns what it last read."""
        cur = self._live.get(campaign)
        if cur is not None and (
            self._background or time.monotonic() - cur.checked_at < self.refresh_seconds
        ):
            return cur
        return self.refresh(campaign)

    def refresh(self, campaign: str) -> _Live:
        """Re-read a campaign's deployment state now (the background thread, or a decision
        whose cached state is older than ``refresh_seconds``)."""
        cur = self._live.get(campaign)
        mono = time.monotonic()
        if cur is not None and mono < self._db_down_until:
            return cur  # the database is down: keep serving the state we know
        try:
            gen = self.backend.generation()
            if cur is not None and cur.generation == gen:
                cur = _Live(gen, cur.released, cur.shadows, mono, cur.canary)
            else:
                st = self.deployments.state(campaign)
                released = self._load(campaign, st.released, RELEASED) if st.released else None
                if st.released and released is None:
                    offers = self.campaign(campaign).offer_ids
                    released = (st.released, cast(Policy, _Unavailable(offers, st.released)))
                shadows = tuple(
                    x for v in st.shadows if (x := self._load(campaign, v, SHADOW)) is not None
                )
                c = self._load(campaign, st.canary, CANARY) if st.canary else None
                canary = (c[0], c[1], st.canary_share) if c is not None else None
                cur = _Live(st.generation, released, shadows, mono, canary)
        except BackendUnavailable:
            self.metrics.backend_errors.labels("database", "deployments").inc()
            self._db_down_until = time.monotonic() + 2.0
            if cur is None:
                raise
            cur = _Live(cur.generation, cur.released, cur.shadows, mono, cur.canary)
        self._live[campaign] = cur
        return cur

    def refresh_in_background(self) -> None:
        """From now on decisions use the cached state only; the caller runs :meth:`refresh`
        for every campaign periodically (and did once before)."""
        self._background = True

    @property
    def background(self) -> bool:
        """Whether a background thread re-reads the deployment state (decisions never do)."""
        return self._background

    def cached(self, campaign: str) -> _Live | None:
        """The state decisions use now, without any I/O (None: never read)."""
        return self._live.get(campaign)

    def _log(self, record: DecisionRecord) -> None:
        """Make the decision durable before the answer: appended to the journal (committed
        to the database in batches, ``backends._journal``), or committed to the database
        directly; while the database is down, a direct log falls back to the journal."""
        journal = self.journal
        if journal is not None and self.journal_first:
            journal.append(record)
            return
        mono = time.monotonic()
        if journal is None or mono >= self._db_down_until:
            try:
                self.backend.append_decisions([record])
                return
            except BackendUnavailable:
                if journal is None:
                    raise
                self._db_down_until = mono + 2.0
                self.metrics.backend_errors.labels("database", "append_decisions").inc()
        note = "decision log journaled locally (database unavailable)"
        journal.append(replace(record, fallback="; ".join(x for x in (record.fallback, note) if x)))
        self.metrics.fallbacks.labels(record.campaign, "log_journaled").inc()

    def _load(self, campaign: str, version: str, mode: str) -> tuple[str, Policy] | None:
        try:
            policy = self.registry.load(version)
        except BackendUnavailable:
            raise
        except Exception:  # corrupt artifact, unknown kind, bad parameters: out of service
            self.metrics.policy_errors.labels(campaign, version, mode).inc()
            return None
        scored_here = mode != SHADOW or self.shadows.in_process
        if self.compile_dir is not None and scored_here and self.compile_after == 0:
            self._start_compile(policy)
        return version, policy

    def _served(self, policy: Policy) -> None:
        """Count a decision ``policy`` served; compile it once it is hot."""
        if self.compile_dir is None or self.compile_after == 0 or policy in self._compiling:
            return
        n = self._uses.get(policy, 0) + 1
        self._uses[policy] = n
        if n >= self.compile_after:
            self._start_compile(policy)

    def _start_compile(self, policy: Policy) -> None:
        with self._compile_lock:
            if policy in self._compiling:
                return
            self._compiling.add(policy)
            self._uses.pop(policy, None)
        t = threading.Thread(
            target=self._compile, args=(policy,), name="offerloop-compile", daemon=True
        )
        t.start()
        self._compile_threads = [x for x in self._compile_threads if x.is_alive()] + [t]

    def wait_compiled(self, timeout: float = 60.0) -> None:
        """Wait for the native code of the versions loaded so far (benchmarks, tests)."""
        deadline = time.monotonic() + timeout
        for t in list(self._compile_threads):
            t.join(max(0.0, deadline - time.monotonic()))

    def _compile(self, policy: Policy) -> None:
        """Native code for the version's models, in the background: until it is ready (a
        second or two of the C compiler), or if it cannot be built, LightGBM serves."""
        assert self.compile_dir is not None
        try:
            policy.compile(self.compile_dir)
        except Unsupported:
            pass
        except Exception:  # no compiler, or a check that failed: counted, LightGBM serves
            self.metrics.errors.labels("compile").inc()

    def _draw(self, p: np.ndarray[Any, np.dtype[np.float64]]) -> int:
        """Draw an index with probabilities ``p`` (inverse CDF: a tenth of ``rng.choice``'s
        cost on 24 offers)."""
        with self._rng_lock:
            u = float(self._rng.random())
        i = int(np.searchsorted(np.cumsum(p), u * float(p.sum()), side="right"))
        return min(i, len(p) - 1)

    def _capped_draw(
        self,
        campaign: Campaign,
        player_id: str,
        row: Mapping[str, Any],
        p: np.ndarray[Any, np.dtype[np.float64]],
        now: float,
        notes: list[str],
    ) -> tuple[list[str] | None, bool, np.ndarray[Any, np.dtype[np.float64]], int]:
        """:meth:`_restrict_and_draw` with the campaign's caps: the player's shows are read,
        the offer drawn among what they still allow and its show recorded in one step,
        atomic per player (``backends.CapLedger.take``), so the logged eligible offers and
        propensity are exactly those of the draw. When the store cannot do it, the caps are
        not applied (availability first), counted and noted."""
        drawn: list[tuple[list[str] | None, bool, np.ndarray[Any, np.dtype[np.float64]], int]] = []
        kept = len(notes)

        def choose(shows: list[tuple[str, float]]) -> list[tuple[str, float]]:
            del notes[kept:]  # a store that retried the transaction: one draw counts
            drawn[:] = [self._restrict_and_draw(campaign, row, p, now, shows, notes)]
            _, fallback, _, idx = drawn[0]
            if fallback:  # the default stands in for want of any offer: not counted
                return []
            return [(k, w) for k, _, w in campaign.cap_checks(campaign.offer_ids[idx])]

        try:
            self.backend.take(player_id, now - campaign.longest_cap, choose, now)
        except BackendUnavailable as exc:
            del notes[kept:]
            self.metrics.backend_errors.labels("database", "caps").inc()
            self.metrics.fallbacks.labels(campaign.id, "caps").inc()
            notes.append(f"caps: not applied ({exc.message})"[:200])
            return self._restrict_and_draw(campaign, row, p, now, None, notes)
        return drawn[0]

    def _restrict_and_draw(
        self,
        campaign: Campaign,
        row: Mapping[str, Any],
        p: np.ndarray[Any, np.dtype[np.float64]],
        now: float,
        shows: Sequence[tuple[str, float]] | None,
        notes: list[str],
    ) -> tuple[list[str] | None, bool, np.ndarray[Any, np.dtype[np.float64]], int]:
        """Restrict the served probabilities to the offers this row may be shown (eligibility,
        schedule, caps; the default offer when there are none) and draw one. Returns what may
        be shown (None: every offer), whether the default stands in for want of any (not
        counted against caps), the probabilities and the index."""
        eligible = campaign.eligible(row, now, shows or ())
        if eligible is None:
            return None, False, p, self._draw(p)
        if not eligible:
            self.metrics.fallbacks.labels(campaign.id, "no_eligible_offer").inc()
            notes.append(
                "no eligible offer: the default"
                if campaign.running(now)
                else "campaign not running: the default"
            )
        allowed = campaign.shown_among(eligible)
        q = restrict_one(p, {ELIGIBLE: allowed}, campaign.offer_ids)
        return allowed, not eligible, q, self._draw(q)

    def decide(
        self, player_id: str, campaign_id: str, context: Mapping[str, Any] | None = None
    ) -> Decision:
        """One logged decision for ``player_id`` in ``campaign_id`` (see the class doc)."""
        started = time.perf_counter()
        campaign = self.campaign(campaign_id)
        context = dict(context or {})
        now = self.clock.now()
        t0 = time.perf_counter()
        notes: list[str] = []
        row: dict[str, Any]  # the feature values, and the eligible offers when restricted
        try:
            row = self.features(player_id, now, context)
        except BackendUnavailable as exc:
            if self.default_features is None:
                raise
            # the online store is down: decide on default values rather than not at all
            self.metrics.backend_errors.labels("online_store", "read").inc()
            self.metrics.fallbacks.labels(campaign.id, "features").inc()
            notes.append(f"features: defaults ({exc.message})"[:200])
            row = self.default_features(player_id, now, context)
        self.metrics.feature_duration.observe(time.perf_counter() - t0)
        live = self.live(campaign.id)
        if live.released is None:
            raise Conflict(f"campaign {campaign.id!r} has no released version")
        version, policy = live.released
        mode, p = RELEASED, None
        # scoring time is the CPU time this thread spends in the policy: what the model
        # costs, whatever else the host runs (wall time on a busy host measures the host, and
        # rolled a canary back against a random release's 0.2 ms; see docs/architecture.md)
        t0 = time.thread_time()
        if campaign.control_share > 0 and control_bucket(player_id, campaign.id) < (
            campaign.control_share
        ):
            # kept out of personalisation: the lift of everything else is measured against it
            version, mode = CONTROL, CONTROL
            k = len(campaign.offers)
            p = np.full(k, 1.0 / k)
            if campaign.control == "default":
                p = np.zeros(k)
                p[campaign.index(campaign.default_offer)] = 1.0
        elif live.canary is not None and canary_bucket(player_id, campaign.id) < live.canary[2]:
            # a failing canary must not fail the player: the release serves, the log says why
            try:
                p = _checked(live.canary[1].act(row), len(campaign.offers), live.canary[0])
                version, mode = live.canary[0], CANARY
            except Exception as exc:  # any bug in a candidate model
                notes.append(f"canary {live.canary[0]} failed: {exc}"[:300])
                self.metrics.policy_errors.labels(campaign.id, live.canary[0], CANARY).inc()
                self.metrics.fallbacks.labels(campaign.id, "canary").inc()
                t0 = time.thread_time()
        if p is None:
            try:
                p = _checked(policy.act(row), len(campaign.offers), version)
            except Exception as exc:  # the release itself: uniform random, exact propensity
                notes.append(f"release {version} failed: {exc}"[:300])
                self.metrics.policy_errors.labels(campaign.id, version, RELEASED).inc()
                self.metrics.fallbacks.labels(campaign.id, "release").inc()
                p = np.full(len(campaign.offers), 1.0 / len(campaign.offers))
        score_ms = (time.thread_time() - t0) * 1000.0
        if mode != CONTROL:
            self._served(live.canary[1] if mode == CANARY and live.canary is not None else policy)
        if campaign.caps:
            shown, _, p, idx = self._capped_draw(campaign, player_id, row, p, now, notes)
        else:
            shown, _, p, idx = self._restrict_and_draw(campaign, row, p, now, None, notes)
        if shown is not None:
            row = {**row, ELIGIBLE: shown}
        if p[idx] < p.max():
            self.metrics.exploration.labels(campaign.id, version).inc()
        offer = campaign.offers[idx]
        record = DecisionRecord(
            decision_id=new_decision_id(now),
            ts=now,
            player_id=player_id,
            campaign=campaign.id,
            offer_id=offer.id,
            model_version=version,
            mode=mode,
            propensity=float(p[idx]),
            features=row,
            context=context,
            score_ms=score_ms,
            fallback="; ".join(notes),
            price=float(offer.price),
        )
        self._log(record)
        # shadows are scored after the answer, in batches (decisions._shadows)
        self.shadows.submit(
            record.decision_id, campaign.id, row, idx, campaign.offer_ids, live.shadows
        )
        self.metrics.decisions.labels(campaign.id, version, mode, offer.id).inc()
        self.metrics.decision_duration.labels(campaign.id).observe(time.perf_counter() - started)
        token = (
            decision_token(self.token_secret, record.decision_id, player_id)
            if self.token_secret
            else ""
        )
        return Decision(record, offer, token)


class _Unavailable:
    """Stands in for a release whose artifact cannot be loaded: every call fails, so the
    decision falls back to uniform random and says why."""

    def __init__(self, offers: Sequence[str], version: str) -> None:
        self.offers = list(offers)
        self.version = version

    def act(self, row: Mapping[str, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        raise Conflict(f"the artifact of {self.version} could not be loaded")


def _checked(
    p: np.ndarray[Any, np.dtype[np.float64]], k: int, version: str
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A policy's output must be k non-negative finite probabilities summing to 1."""
    p = np.asarray(p, dtype=np.float64)
    total = float(p.sum()) if p.shape == (k,) else math.nan
    if not (math.isfinite(total) and abs(total - 1.0) < 1e-6 and (p >= 0).all()):
        raise Conflict(f"version {version} returned invalid probabilities; it cannot serve")
    out: np.ndarray[Any, np.dtype[np.float64]] = p / total
    return out
