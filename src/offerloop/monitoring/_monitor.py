"""The numbers behind every chart, for one offerloop instance: business metrics from the logs,
drift against the training window, latency and freshness from this process's histograms,
and pipeline runs. The JSON API, the dashboard, the report and the Prometheus gauges all read
them from here, so they always agree.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from offerloop._clock import format_ts
from offerloop.decisions import CONTROL
from offerloop.monitoring._business import (
    calibration,
    conversion_by_offer,
    lift,
    matured_rewards,
    revenue_by_version,
    shadow_estimates,
)
from offerloop.monitoring._drift import drift_report, state_of
from offerloop.registry import transition_doc
from offerloop.training import Evidence, reward_bound

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from offerloop._system import Offerloop

__all__ = ["Monitor", "histogram_quantiles"]

_log = logging.getLogger("offerloop.monitoring")

DAY = 86400.0
MAX_DRIFT_ROWS = 20_000  # per window: the newest ones
THIN_ROWS = 100  # a time bucket resting on fewer decisions is marked thin
_LEVEL = {"ok": 0, "warn": 1, "alert": 2}


def histogram_quantiles(
    hist: Histogram, quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> dict[str, Any]:
    """Quantiles (seconds) of a Prometheus histogram summed over its labels, interpolated
    linearly inside buckets (as PromQL's histogram_quantile does)."""
    buckets: dict[float, float] = {}
    count = 0.0
    for metric in hist.collect():
        for s in metric.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name.endswith("_count"):
                count += s.value
    out: dict[str, Any] = {"count": int(count)}
    edges = sorted(buckets)
    for q in quantiles:
        key = f"p{q * 100:g}"
        if count == 0:
            out[key] = None
            continue
        rank, lo, prev = q * count, 0.0, 0.0
        value = None
        for le in edges:
            if buckets[le] >= rank:
                if math.isinf(le):
                    value = lo
                else:
                    inside = buckets[le] - prev
                    frac = (rank - prev) / inside if inside > 0 else 1.0
                    value = lo + (le - lo) * frac
                break
            lo, prev = le, buckets[le]
        out[key] = value
    return out


class Monitor:
    """The monitoring numbers of one running offerloop, cached for a minute per question.

    Built above the façade by whoever shows them (the HTTP app, the demo, ``offerloop
    report``); while open, its drift and revenue gauges are part of the system's Prometheus
    registry. ``close`` takes them out again."""

    def __init__(self, system: Offerloop) -> None:
        self.system = system
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._gauges = _Gauges(self)
        system.metrics.registry.register(self._gauges)

    # -- helpers -------------------------------------------------------------------------
    def window(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        days: float = 14.0,
    ) -> tuple[float, float, bool]:
        """The time range a view shows: ``[start, end]`` as given; by default the ``days``
        up to now, or, when the campaign has no decision in them (the clock is far from the
        data: a replay, the demo's simulated March), the ``days`` up to its newest decision.
        The flag says the range was moved to the data."""
        now = self.system.clock.now()
        if end is not None or start is not None:
            s, e = self._range(start, end, days)
            return s, e, False
        c = self.system.campaign(campaign)
        # one read: the newest decision up to now says whether the default range has data
        newest = self.system.backend.decisions(c.id, 0.0, now + 1e-6, newest=1)
        if not newest or newest[0].ts >= now - days * DAY:
            return now - days * DAY, now, False
        end_at = newest[0].ts + 1.0
        return end_at - days * DAY, end_at, True

    def _range(
        self, start: float | None, end: float | None, default_days: float = 14.0
    ) -> tuple[float, float]:
        now = self.system.clock.now()
        end = now if end is None else min(end, now)
        start = end - default_days * DAY if start is None else start
        return start, end

    def _cached(self, key: str, compute: Any, ttl: float = 60.0) -> Any:
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        value = compute()
        with self._lock:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < ttl}
            self._cache[key] = (now, value)
        return value

    def _matured(self, campaign: str, start: float, end: float) -> Any:
        """Matured decisions and rewards of a range; shared by the charts of one page."""
        s = self.system
        s.flush_shadows()
        now = s.clock.now()
        return self._cached(
            f"matured:{campaign}:{start}:{end}:{now - s.window_seconds >= end}",
            lambda: matured_rewards(s.backend, campaign, start, end, s.attribution, now),
            ttl=10.0,
        )

    # -- business metrics ----------------------------------------------------------------
    def revenue(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        bucket_seconds: float = DAY,
    ) -> dict[str, Any]:
        """Realised revenue per decision by (version, mode, time bucket) over the matured decisions
        of the range (default: the last 14 days), with the deployment transitions in it and how
        many decisions are still inside their attribution window."""
        c = self.system.campaign(campaign)
        start, end = self._range(start, end)
        decisions, rewards, still_open = self._matured(c.id, start, end)
        transitions = [  # the API's shape, with the time also as epoch seconds for charts
            {**transition_doc(t), "ts": t.ts, "at": format_ts(t.ts)}
            for t in self.system.deployments.history(c.id)
            if start <= t.ts <= end
        ]
        return {
            "campaign": c.id,
            "start": format_ts(start),
            "end": format_ts(end),
            "bucket_seconds": bucket_seconds,
            "open_decisions": still_open,
            "series": revenue_by_version(decisions, rewards, bucket_seconds),
            "transitions": transitions,
        }

    def lift(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        bucket_seconds: float = DAY,
    ) -> dict[str, Any]:
        """The campaign's revenue over its control group (``monitoring._business.lift``) on
        the matured decisions of the range (default: the last 14 days)."""
        c = self.system.campaign(campaign)
        start, end = self._range(start, end)
        decisions, rewards, still_open = self._matured(c.id, start, end)
        return {
            "campaign": c.id,
            "control_share": c.control_share,
            "control": c.control,
            "start": format_ts(start),
            "end": format_ts(end),
            "bucket_seconds": bucket_seconds,
            "open_decisions": still_open,
            **lift(decisions, rewards, CONTROL, bucket_seconds),
        }

    def conversion(
        self, campaign: str | None = None, start: float | None = None, end: float | None = None
    ) -> dict[str, Any]:
        """Decisions, purchases, conversion and revenue per decision by offer, over the matured
        decisions of the range (default: the last 14 days)."""
        c = self.system.campaign(campaign)
        start, end = self._range(start, end)
        decisions, rewards, still_open = self._matured(c.id, start, end)
        return {
            "campaign": c.id,
            "open_decisions": still_open,
            "offers": conversion_by_offer(decisions, rewards),
        }

    def calibration(
        self, campaign: str | None = None, start: float | None = None, end: float | None = None
    ) -> dict[str, Any]:
        """Predicted vs realised revenue of every version that served matured decisions in the range
        (its ``calibration`` is None when it has no reward model)."""
        c = self.system.campaign(campaign)
        start, end = self._range(start, end)
        decisions, rewards, _ = self._matured(c.id, start, end)
        by_version: dict[str, list[Any]] = {}
        for d in decisions:
            if d.mode != CONTROL:  # the control group is served by no registered version
                by_version.setdefault(d.model_version, []).append(d)
        versions = []
        for version, rows in by_version.items():
            cal = calibration(self.system.registry.load(version), c.offer_ids, rows, rewards)
            versions.append({"version": version, "calibration": cal})
        return {"campaign": c.id, "versions": versions}

    def shadows(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        bucket_seconds: float = DAY,
    ) -> dict[str, Any]:
        """Each shadow version's off-policy estimate per time bucket, on the matured decisions of
        the range it scored (default: the last 14 days)."""
        c = self.system.campaign(campaign)
        start, end = self._range(start, end)
        decisions, rewards, _ = self._matured(c.id, start, end)
        s = self.system.settings
        top = reward_bound([o.price for o in c.offers], s)
        series = shadow_estimates(decisions, rewards, bucket_seconds, top, Evidence.of(s))
        return {"campaign": c.id, "series": series}

    # -- drift ---------------------------------------------------------------------------
    def _reference(
        self, campaign: str, version: str | None, now: float
    ) -> tuple[float, float, str]:
        """The window a version's live traffic is compared with: its training window (its
        lineage), or the log's first ``drift_window_hours`` for an untrained version."""
        s = self.system
        lineage = s.registry.get(version).lineage if version else {}
        if "data_start" in lineage and "data_end" in lineage:
            start, end = float(lineage["data_start"]), float(lineage["data_end"])
            return start, end, f"training window of {version}"
        hours = s.settings.drift_window_hours
        first = s.backend.decisions(campaign, 0.0, now + 1e-6, newest=None)[:1]
        start = first[0].ts if first else now
        return (
            start,
            start + hours * 3600.0,
            f"first {hours:g} h of the log ({version} is not trained)",
        )

    def drift(self, campaign: str | None = None) -> dict[str, Any]:
        """Live traffic of the last ``drift_window_hours`` against the released version's
        training window (its lineage), or against the first such window of the log when the
        release was not trained (random, rules)."""
        s = self.system
        c = s.campaign(campaign)
        now = s.clock.now()
        live_start = now - s.settings.drift_window_hours * 3600.0
        released = s.deployments.state(c.id).released
        ref_start, ref_end, basis = self._reference(c.id, released, now)
        ref = s.backend.decisions(c.id, ref_start, ref_end, newest=MAX_DRIFT_ROWS)
        live = s.backend.decisions(c.id, live_start, now + 1e-6, newest=MAX_DRIFT_ROWS)
        # the offer mix is the release's own: its first window of serving vs its latest
        since = next((d.since for d in s.backend.deployments(c.id) if d.version == released), now)
        first = s.backend.decisions(
            c.id, since, since + s.settings.drift_window_hours * 3600.0, newest=MAX_DRIFT_ROWS
        )
        mine = [d.offer_id for d in first if d.model_version == released]
        recent = [d.offer_id for d in live if d.model_version == released]
        report = drift_report(
            s.features,
            [d.features for d in ref],
            [d.features for d in live],
            mine if since <= live_start else [],
            recent,
            s.settings.drift_warn_psi,
            s.settings.drift_alert_psi,
        )
        report["offers"]["basis"] = f"{released}'s first {s.settings.drift_window_hours:g} h"
        report.update(
            campaign=c.id,
            reference={"start": format_ts(ref_start), "end": format_ts(ref_end), "basis": basis},
            live={"start": format_ts(live_start), "end": format_ts(now)},
        )
        return report

    def _buckets(self, campaign: str, start: float, end: float, bucket: float) -> list[Any]:
        """The decisions of each time bucket of the range (the newest MAX_DRIFT_ROWS of each,
        matured or not), cached briefly: the drift and freshness series share them."""
        s = self.system

        def read() -> list[tuple[float, list[Any]]]:
            out = []
            b = start
            while b < end:
                out.append(
                    (
                        b,
                        s.backend.decisions(
                            campaign, b, min(b + bucket, end), newest=MAX_DRIFT_ROWS
                        ),
                    )
                )
                b += bucket
            return out

        return list(self._cached(f"buckets:{campaign}:{start}:{end}:{bucket}", read, ttl=10.0))

    def drift_series(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        bucket_seconds: float = DAY,
    ) -> dict[str, Any]:
        """Drift over time: each time bucket's decisions against the reference of the version
        that served most of its released decisions (without decisions: released at its start):
        its training window, or the log's first window when it was not trained. PSI per
        feature; buckets resting on fewer than ``THIN_ROWS`` decisions are marked thin."""
        s = self.system
        c = s.campaign(campaign)
        start, end = self._range(start, end)
        now = s.clock.now()
        history = sorted(s.deployments.history(c.id), key=lambda t: t.ts)
        refs: dict[str | None, tuple[str, list[Mapping[str, Any]]]] = {}
        series = []
        for b, rows in self._buckets(c.id, start, end, bucket_seconds):
            served = Counter(d.model_version for d in rows if d.mode == "released")
            released = served.most_common(1)[0][0] if served else None
            for t in history if released is None else ():  # no decision: the history says
                if t.ts > b:
                    break
                if t.to_mode == "released":
                    released = t.version
            if released not in refs:
                r0, r1, basis = self._reference(c.id, released, now)
                ref_rows = s.backend.decisions(c.id, r0, r1, newest=MAX_DRIFT_ROWS)
                refs[released] = (basis, [d.features for d in ref_rows])
            basis, ref_features = refs[released]
            report = drift_report(
                s.features,
                ref_features,
                [d.features for d in rows],
                [],
                [],
                s.settings.drift_warn_psi,
                s.settings.drift_alert_psi,
            )
            psis = {f["feature"]: f["psi"] for f in report["features"] if f["psi"] is not None}
            worst = max(psis.values(), default=None)
            series.append(
                {
                    "bucket_start": b,
                    "at": format_ts(b),
                    "released": released,
                    "reference": basis,
                    "reference_rows": len(ref_features),
                    "decisions": len(rows),
                    "thin": len(rows) < THIN_ROWS,
                    "psi": psis,
                    "max_psi": worst,
                    "state": "no data"
                    if worst is None
                    else state_of(worst, s.settings.drift_warn_psi, s.settings.drift_alert_psi),
                }
            )
        return {
            "campaign": c.id,
            "start": format_ts(start),
            "end": format_ts(end),
            "bucket_seconds": bucket_seconds,
            "thresholds": {"warn": s.settings.drift_warn_psi, "alert": s.settings.drift_alert_psi},
            "series": series,
        }

    def freshness_series(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        bucket_seconds: float = DAY,
    ) -> dict[str, Any]:
        """How fresh the data behind decisions was, over time, from the logs (every process's):
        per time bucket, how late the clients' events arrived (p50/p99 of received - event
        time, by receipt time; the newest 50,000 events of the range) and the share of the
        campaign's decisions that fell back (online store unavailable or slow, default
        features, a failed model)."""
        s = self.system
        c = s.campaign(campaign)
        start, end = self._range(start, end)
        lags = s.backend.event_lags(start, end)
        by_bucket: dict[float, list[float]] = {}
        for received, lag in lags:
            b = start + ((received - start) // bucket_seconds) * bucket_seconds
            by_bucket.setdefault(b, []).append(max(0.0, lag))
        series = []
        for b, rows in self._buckets(c.id, start, end, bucket_seconds):
            late = by_bucket.get(b, [])
            fell_back = sum(1 for d in rows if d.fallback)
            series.append(
                {
                    "bucket_start": b,
                    "at": format_ts(b),
                    "events": len(late),
                    "lag_p50_seconds": float(np.percentile(late, 50)) if late else None,
                    "lag_p99_seconds": float(np.percentile(late, 99)) if late else None,
                    "decisions": len(rows),
                    "fallback_share": fell_back / len(rows) if rows else None,
                    "thin": len(rows) < THIN_ROWS,
                }
            )
        return {
            "campaign": c.id,
            "start": format_ts(start),
            "end": format_ts(end),
            "bucket_seconds": bucket_seconds,
            "events_sampled": len(lags),
            "series": series,
        }

    # -- service health ------------------------------------------------------------------
    def latency(self) -> dict[str, Any]:
        """Quantiles (seconds) of decision, feature lookup and HTTP request times, since this
        process started."""
        m = self.system.metrics
        return {
            "decision_seconds": histogram_quantiles(m.decision_duration),
            "feature_lookup_seconds": histogram_quantiles(m.feature_duration),
            "http_seconds": histogram_quantiles(m.http_duration),
            "since": "start of this process",
        }

    def freshness(self) -> dict[str, Any]:
        """Quantiles (seconds) of the age of the newest event behind served features, since this
        process started."""
        return {
            "age_seconds": histogram_quantiles(self.system.metrics.feature_freshness),
            "since": "start of this process",
        }

    def scoring(
        self,
        campaign: str | None = None,
        start: float | None = None,
        end: float | None = None,
        bucket_seconds: float = DAY,
    ) -> dict[str, Any]:
        """Scoring time per decision over time, from the decision log (every process's, not
        only this one's histograms): p50 and p99 of the logged ``score_ms`` by (version, time
        bucket), over the range's matured decisions."""
        c = self.system.campaign(campaign)
        start, end = self._range(start, end)
        decisions, _rewards, _open = self._matured(c.id, start, end)
        groups: dict[tuple[str, float], list[float]] = {}
        for d in decisions:
            b = start + ((d.ts - start) // bucket_seconds) * bucket_seconds
            groups.setdefault((d.model_version, b), []).append(float(d.score_ms))
        return {
            "campaign": c.id,
            "bucket_seconds": bucket_seconds,
            "series": [
                {
                    "version": v,
                    "bucket_start": b,
                    "decisions": len(ms),
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                }
                for (v, b), ms in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            ],
        }

    def runs(self, limit: int = 30) -> dict[str, Any]:
        """The newest ``limit`` pipeline runs, oldest first: status, winner, controller actions."""
        docs = self.system.backend.runs()[-limit:]
        return {
            "runs": [
                {
                    "id": d["id"],
                    "started_at": d.get("started_at"),
                    "status": d.get("status"),
                    "attempts": d.get("attempts", 1),
                    "winner": (d.get("retrain") or {}).get("winner"),
                    "shadowed": (d.get("retrain") or {}).get("shadowed"),
                    "skipped": (d.get("retrain") or {}).get("skipped"),
                    "controller": [
                        f"{x['action']} {x['version']}"
                        for x in d.get("controller", [])
                        if x["action"] != "wait"
                    ],
                    "seconds": d.get("seconds"),
                }
                for d in docs
            ]
        }

    # -- Prometheus ----------------------------------------------------------------------
    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop refreshing the gauges and take them out of the Prometheus registry."""
        self._gauges.close()
        with contextlib.suppress(KeyError):  # closed twice
            self.system.metrics.registry.unregister(self._gauges)

    def refresh_gauges(self) -> None:
        """Compute the drift and revenue gauges now (a scrape only starts a refresh)."""
        self._gauges.refresh()


class _Gauges(Collector):
    """Drift and realised revenue as gauges. A scrape never computes them: it returns the last
    values and, when they are older than a minute, starts one background refresh."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._values: list[Metric] = []
        self._at = -math.inf
        self._busy = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Wait for a running refresh and start no other (the backend is closing)."""
        self._closed = True
        with self._busy:
            pass

    def refresh(self) -> None:
        """Recompute every gauge now (the background refresh, or a test)."""
        m = self.monitor
        psi = GaugeMetricFamily(
            "offerloop_feature_drift_psi",
            "Population stability index of a feature, live window vs training window.",
            labels=["campaign", "feature"],
        )
        level = GaugeMetricFamily(
            "offerloop_drift_alert_level",
            "Drift state: 0 ok, 1 warn (PSI >= drift_warn_psi), 2 alert (>= drift_alert_psi).",
            labels=["campaign", "feature"],
        )
        defaults = GaugeMetricFamily(
            "offerloop_feature_default_share",
            "Share of live decisions whose feature value is the default (missing data).",
            labels=["campaign", "feature"],
        )
        revenue = GaugeMetricFamily(
            "offerloop_realised_revenue_per_decision",
            "Realised revenue per matured decision over the last day, by version and mode.",
            labels=["campaign", "model_version", "mode"],
        )
        try:
            for cid in m.system.campaigns:
                report = m.drift(cid)
                for f in report["features"]:
                    if f["psi"] is None:
                        continue
                    psi.add_metric([cid, f["feature"]], f["psi"])
                    level.add_metric([cid, f["feature"]], _LEVEL[f["state"]])
                    defaults.add_metric([cid, f["feature"]], f["default_share_live"] or 0.0)
                if report["offers"]["psi"] is not None:
                    psi.add_metric([cid, "offer_mix"], report["offers"]["psi"])
                    level.add_metric([cid, "offer_mix"], _LEVEL[report["offers"]["state"]])
                now = m.system.clock.now()
                rev = m.revenue(cid, now - DAY - m.system.window_seconds, now, bucket_seconds=1e12)
                for p in rev["series"]:
                    revenue.add_metric([cid, p["version"], p["mode"]], p["revenue_per_decision"])
        except Exception:  # a failed computation keeps the previous values: counted, logged
            m.system.metrics.errors.labels("monitoring").inc()
            _log.exception("the drift and revenue gauges could not be computed")
            return
        self._values = [psi, level, defaults, revenue]
        self._at = time.monotonic()

    def _background(self) -> None:
        try:
            self.refresh()
        finally:
            self._busy.release()

    def collect(self) -> Iterator[Metric]:
        stale = time.monotonic() - self._at > 60.0
        if stale and not self._closed and self._busy.acquire(blocking=False):
            if self._closed:
                self._busy.release()
            else:
                threading.Thread(target=self._background, daemon=True).start()
        yield from self._values
