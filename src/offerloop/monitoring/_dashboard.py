"""The dashboard and the static report: one HTML page of server-rendered SVG charts.

No JavaScript and no chart library: the service renders SVG from the same numbers the
``/v1/monitoring/...`` endpoints return, so the page works offline, in any browser, and as a
single file (``offerloop report``). The live page reloads itself every ``refresh`` seconds.
Every drawn element carries ``data-*`` attributes with its value, for tests and tooling.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offerloop._clock import format_ts, parse_rfc3339
from offerloop._errors import InvalidInput

if TYPE_CHECKING:
    from offerloop.monitoring._monitor import Monitor

__all__ = ["render_dashboard", "write_report"]

# series colours: none of them is a marker's (green release, orange canary, red rollback)
_PALETTE = ("#1f77b4", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939")
# markers of deployment changes: releases, canaries and rollbacks stand out; a retired shadow
# (routine) and a manual undeploy are grey
_MARK = {
    "release": "#2ca02c",
    "canary": "#ff7f0e",
    "rollback": "#d62728",
    "retire": "#9a9a9a",
    "undeploy": "#9a9a9a",
}
_DRAW_ORDER = {"retire": 0, "undeploy": 0, "canary": 1, "release": 2, "rollback": 3}
_STATE = {"ok": "#2ca02c", "warn": "#ff7f0e", "alert": "#d62728", "no data": "#999999"}
W, H, PAD = 760, 260, 48


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


THIN_DECISIONS = 100  # a day's point resting on fewer matured decisions is marked thin


@dataclass(frozen=True)
class _Frame:
    """The scales of one time chart: time ``[x0, x1]`` across, ``[0, ymax]`` up."""

    x0: float
    x1: float
    ymax: float

    @classmethod
    def of(cls, x0: float, x1: float, top: float) -> _Frame:
        return cls(x0, x1, top * 1.1 or 1.0)

    def sx(self, x: float) -> float:
        return float(PAD + (x - self.x0) / max(self.x1 - self.x0, 1e-9) * (W - 2 * PAD))

    def sy(self, y: float) -> float:
        return float(H - PAD + 8 - y / self.ymax * (H - 2 * PAD))

    def open(self, chart_id: str) -> list[str]:
        """The chart's first parts: the svg element, the value axis and the dated time axis."""
        return [
            f'<svg id="{chart_id}" viewBox="0 0 {W} {H + 14}" role="img">',
            _axes(self.ymax, self.sy),
            _date_ticks(self.x0, self.x1, self.sx),
        ]


def _run_marks(runs: Sequence[dict[str, Any]], x0: float, x1: float, sx: Any) -> str:
    """The pipeline's runs on the time axis: a triangle each (green finished, red failed,
    grey otherwise), with what the run did on hover."""
    out = []
    for r in runs:
        try:
            t = parse_rfc3339(str(r.get("started_at")))
        except ValueError:
            continue
        if not x0 <= t <= x1:
            continue
        colour = {"finished": "#2ca02c", "failed": "#d62728"}.get(str(r["status"]), "#9a9a9a")
        did = r.get("winner") or r.get("skipped") or "-"
        steps = "; ".join(r.get("controller") or []) or "no controller action"
        x, y = sx(t), H - PAD + 8
        out.append(
            f'<path class="run" data-run="{_e(r["id"])}" data-status="{_e(r["status"])}" '
            f'd="M{x:.1f},{y - 7:.1f} l-4,7 h8 z" fill="{colour}" opacity="0.7">'
            f"<title>{_e(r.get('started_at'))} run {_e(r['id'])}: {_e(r['status'])}; "
            f"{_e(did)}; {_e(steps)}</title></path>"
        )
    return "".join(out)


def _revenue_chart(rev: dict[str, Any], runs: Sequence[dict[str, Any]] = ()) -> str:
    series: dict[str, list[dict[str, Any]]] = {}
    for p in rev["series"]:
        series.setdefault(p["version"], []).append(p)
    if not series:
        return '<p class="empty">No matured decisions in this range yet.</p>'
    xs = [p["bucket_start"] for pts in series.values() for p in pts]
    xs += [t["ts"] for t in rev["transitions"]]
    x0, x1 = min(xs), max(xs) + rev["bucket_seconds"]
    top = max(p["revenue_per_decision"] for pts in series.values() for p in pts)
    frame = _Frame.of(x0, x1, top)
    sx, sy = frame.sx, frame.sy
    half = rev["bucket_seconds"] / 2
    parts = [*frame.open("revenue-chart"), _run_marks(runs, x0, x1, sx)]
    marks = []
    for t in rev["transitions"]:
        if t["to"] in ("released", "canary") or t["action"] in ("rollback", "retire", "undeploy"):
            kind = "release" if t["to"] == "released" else t["to"] or t["action"]
            if t["action"] == "rollback":
                kind = "rollback"
            if kind in _MARK:
                marks.append((kind, t))
    # routine (grey) markers first, the rollbacks last: where two fall together, the one that
    # matters is the one seen
    taken: list[float] = []
    for kind, t in sorted(marks, key=lambda m: (_DRAW_ORDER[m[0]], m[1]["ts"])):
        x = sx(t["ts"])
        while any(abs(x - u) < 4 for u in taken):  # changes at one moment side by side
            x += 4
        taken.append(x)
        parts.append(
            f'<line class="marker marker-{kind}" data-kind="{kind}" '
            f'data-version="{_e(t["version"])}" data-at="{_e(t["at"])}" x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{PAD - 12}" y2="{H - PAD + 8}" stroke="{_MARK[kind]}" '
            f'stroke-width="2" stroke-dasharray="4 3"><title>{_e(t["at"])} {_e(t["action"])} '
            f"{_e(t['version'])} → {_e(t['to'] or 'out')}: {_e(t['reason'])}</title></line>"
        )
    legend = []
    for i, (version, pts) in enumerate(
        sorted(series.items(), key=lambda kv: kv[1][0]["bucket_start"])
    ):
        color = _PALETTE[i % len(_PALETTE)]
        pts = sorted(pts, key=lambda p: p["bucket_start"])
        coords = " ".join(
            f"{sx(p['bucket_start'] + half):.1f},{sy(p['revenue_per_decision']):.1f}" for p in pts
        )
        parts.append(
            f'<polyline class="series" data-version="{_e(version)}" points="{coords}" '
            f'fill="none" stroke="{color}" stroke-width="2"/>'
        )
        for p in pts:
            thin = p["decisions"] < THIN_DECISIONS
            warning = f" · thin evidence: {p['decisions']} decisions" if thin else ""
            parts.append(
                f'<circle class="point{" thin" if thin else ""}" data-version="{_e(version)}" '
                f'data-mode="{_e(p["mode"])}" '
                f'data-bucket="{_e(format_ts(p["bucket_start"]))}" '
                f'data-value="{p["revenue_per_decision"]:.6f}" '
                f'cx="{sx(p["bucket_start"] + half):.1f}" cy="{sy(p["revenue_per_decision"]):.1f}" '
                f'r="{4 if p["mode"] == "released" else 3}" '
                f'fill="{color if p["mode"] == "released" else "white"}" stroke="{color}"'
                + (' stroke-dasharray="2 2" opacity="0.6"' if thin else "")
                + ">"
                f"<title>{_e(version)} ({_e(p['mode'])}) {_e(format_ts(p['bucket_start'])[:10])}: "
                f"{p['revenue_per_decision']:.3f} per decision ± {p['se']:.3f}, "
                f"{p['decisions']} decisions{warning}</title></circle>"
            )
        legend.append(f'<span class="legend" style="color:{color}">■ {_e(version)}</span>')
    parts.append("</svg>")
    keys = " ".join(
        f'<span class="legend" style="color:{c}">┆ {k}</span>'
        for k, c in _MARK.items()
        if k != "undeploy"
    )
    note = (
        "filled: released, hollow: canary; faint dashed: fewer than "
        f"{THIN_DECISIONS} matured decisions (thin evidence); ▲ pipeline runs"
    )
    return "".join(parts) + f'<div class="legends">{" ".join(legend)}<br>{keys} · {note}</div>'


def _by_version(points: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        out.setdefault(p["version"], []).append(p)
    return out


def _lines_chart(
    chart_id: str,
    series: dict[str, list[tuple[float, float]]],
    x0: float,
    x1: float,
    lines: Sequence[tuple[float, str]] = (),
    unit: str = "",
    thin: dict[float, str] | None = None,
    empty: str = "No matured decisions in this range yet.",
) -> str:
    """A time series per name on a dated axis, with horizontal reference lines; a point at
    an x of ``thin`` rests on too little evidence (drawn faint, the reason on hover)."""
    if not any(series.values()):
        return f'<p class="empty">{_e(empty)}</p>'
    thin = thin or {}
    frame = _Frame.of(
        x0, x1, max([y for pts in series.values() for _, y in pts] + [v for v, _ in lines])
    )
    sx, sy = frame.sx, frame.sy
    parts = frame.open(chart_id)
    for value, label in lines:
        parts.append(
            f'<line class="reference" x1="{PAD}" x2="{W - PAD}" y1="{sy(value):.1f}" '
            f'y2="{sy(value):.1f}" stroke="#d62728" stroke-dasharray="4 3"><title>{_e(label)}'
            "</title></line>"
        )
    legend = []
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = _PALETTE[i % len(_PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(
            f'<polyline class="series" data-name="{_e(name)}" points="{coords}" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        for x, y in pts:
            why = thin.get(x)
            parts.append(
                f'<circle class="value{" thin" if why else ""}" data-name="{_e(name)}" '
                f'data-value="{y:.4f}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"'
                + (' opacity="0.4"' if why else "")
                + f"><title>{_e(name)} {_e(format_ts(x)[:16])}: {y:.3f}{_e(unit)}"
                + (f" · thin evidence: {_e(why)}" if why else "")
                + "</title></circle>"
            )
        legend.append(f'<span class="legend" style="color:{color}">■ {_e(name)}</span>')
    parts.append("</svg>")
    note = " · faint: thin evidence" if thin else ""
    return "".join(parts) + f'<div class="legends">{" ".join(legend)}{note}</div>'


def _lift(doc: dict[str, Any] | None, x0: float, x1: float) -> str:
    """Treated and control revenue per decision by day, and the overall lift per decision and
    per player with its interval (``Monitor.lift``)."""
    if doc is None:
        return '<p class="empty">No control group (campaign setting control_share).</p>'
    series: dict[str, list[tuple[float, float]]] = {"treated": [], "control": []}
    for b in doc["series"]:
        half = doc["bucket_seconds"] / 2
        for arm in ("treated", "control"):
            if b["decisions"][arm]:
                series[arm].append((b["bucket_start"] + half, b["per_decision"][arm]))
    o = doc["overall"]

    def interval(x: dict[str, Any]) -> str:
        if x["lower"] is None:
            return "thin: fewer than two in an arm"
        return f"{_num(x['lower'])} to {_num(x['upper'])}"

    rows = [
        (
            unit,
            _num(o[key]["treated"]),
            _num(o[key]["control"]),
            _num(o[key]["lift"]),
            interval(o[key]),
            "-" if o[key]["relative"] is None else f"{o[key]['relative']:+.0%}",
        )
        for unit, key in (("per decision", "per_decision"), ("per player", "per_player"))
    ]
    table = _table(
        ("revenue", "treated", "control", "lift", f"{doc['confidence']:.0%} interval", "relative"),
        rows,
        "lift-table",
    )
    note = (
        f'<p class="status">control: {doc["control_share"]:.0%} of players, shown '
        f"{_e(doc['control'])} offers · {o['decisions']['control']} control and "
        f"{o['decisions']['treated']} treated matured decisions</p>"
    )
    return _lines_chart("lift-chart", series, x0, x1, unit=" per decision") + table + note


def _drift_over_time(doc: dict[str, Any], x0: float, x1: float) -> str:
    half = doc["bucket_seconds"] / 2
    series: dict[str, list[tuple[float, float]]] = {}
    thin: dict[float, str] = {}
    for p in doc["series"]:
        for name, value in p["psi"].items():
            series.setdefault(name, []).append((p["bucket_start"] + half, value))
        if p["thin"] and p["psi"]:
            thin[p["bucket_start"] + half] = f"{p['decisions']} decisions"

    # the features that drifted most on days with evidence (one colour each); the others are
    # named above the chart
    def worst(name: str) -> float:  # thin days' PSI is mostly noise: they rank last
        solid = [v for x, v in series[name] if x not in thin]
        return max(solid) if solid else -1.0

    ranked = sorted(series, key=lambda n: -worst(n))
    shown = {n: series[n] for n in ranked[: len(_PALETTE)]}
    rest = ranked[len(_PALETTE) :]
    t = doc["thresholds"]
    note = (
        f'<div class="legends">{len(rest)} more features drifted less: {_e(", ".join(rest))}</div>'
        if rest
        else ""
    )
    return note + _lines_chart(
        "drift-series-chart",
        shown,
        x0,
        x1,
        [(t["warn"], f"warn {t['warn']:g}"), (t["alert"], f"alert {t['alert']:g}")],
        thin=thin,
        empty="No decisions in this range yet.",
    )


def _freshness_over_time(doc: dict[str, Any], x0: float, x1: float) -> str:
    half = doc["bucket_seconds"] / 2
    lag: dict[str, list[tuple[float, float]]] = {"event lateness p50": [], "event lateness p99": []}
    fell: dict[str, list[tuple[float, float]]] = {"decisions that fell back (%)": []}
    thin: dict[float, str] = {}
    for p in doc["series"]:
        x = p["bucket_start"] + half
        if p["lag_p50_seconds"] is not None:
            lag["event lateness p50"].append((x, p["lag_p50_seconds"]))
            lag["event lateness p99"].append((x, p["lag_p99_seconds"]))
        if p["fallback_share"] is not None:
            fell["decisions that fell back (%)"].append((x, 100.0 * p["fallback_share"]))
            if p["thin"]:
                thin[x] = f"{p['decisions']} decisions"
    return _lines_chart(
        "freshness-series-chart", lag, x0, x1, unit=" s", empty="No events in this range."
    ) + _lines_chart(
        "fallback-series-chart",
        fell,
        x0,
        x1,
        unit=" %",
        thin=thin,
        empty="No decisions in this range yet.",
    )


def _date_ticks(x0: float, x1: float, sx: Any) -> str:
    """Dates under the time axis: a tick at each UTC midnight (every n-th day when there are
    many), labelled MM-DD, the first one with its year."""
    day = 86400.0
    first = math.ceil(x0 / day) * day
    count = max(1, int((x1 - first) // day) + 1)
    step = max(1, math.ceil(count / 10))
    out = []
    for i in range(0, count, step):
        t = first + i * day
        if t > x1:
            break
        x = sx(t)
        label = format_ts(t)[:10] if i == 0 else format_ts(t)[5:10]
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - PAD + 8}" y2="{H - PAD + 13}" '
            f'stroke="#888"/><text class="tick date" x="{x:.1f}" y="{H - PAD + 26}" '
            f'text-anchor="middle" data-ts="{_e(format_ts(t))}">{_e(label)}</text>'
        )
    return "".join(out)


def _range_form(
    campaign: str, start: float, end: float, moved: bool, refresh: int | None, form: bool
) -> str:
    """The range shown, and (``form``) a form to pick another one (plain GET: no script)."""
    note = (
        " · no decisions in the 14 days up to now: showing the 14 days up to the newest data"
        if moved
        else ""
    )
    picker = (
        '<form class="range" method="get" action="/dashboard">'
        f'<input type="hidden" name="campaign" value="{_e(campaign)}">'
        f'<input type="hidden" name="refresh" value="{refresh or 0}">'
        f'from <input type="date" name="start" value="{_e(format_ts(start)[:10])}"> '
        f'to <input type="date" name="end" value="{_e(format_ts(end)[:10])}"> '
        "<button>show</button></form>"
    )
    return (
        (picker if form else "")
        + f'<p class="status" id="range" data-start="{_e(format_ts(start))}" '
        f'data-end="{_e(format_ts(end))}">range {_e(format_ts(start))} → '
        f"{_e(format_ts(end))}{note}</p>"
    )


def _axes(ymax: float, sy: Any) -> str:
    out = [f'<line x1="{PAD}" x2="{W - PAD}" y1="{H - PAD + 8}" y2="{H - PAD + 8}" stroke="#888"/>']
    for i in range(5):
        y = ymax * i / 4
        out.append(
            f'<text x="{PAD - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" class="tick">{y:.2f}</text>'
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>'
        )
    return "".join(out)


def _bars(
    chart_id: str,
    items: Sequence[tuple[str, float | None, str]],
    unit: str,
    lines: Sequence[tuple[float, str]] = (),
) -> str:
    """Horizontal bars: (label, value, colour); reference lines at given values."""
    if not items:
        return '<p class="empty">No data yet.</p>'
    row = 22
    height = row * len(items) + 30
    vmax = max([v for _, v, _ in items if v is not None] + [v for v, _ in lines] + [1e-9]) * 1.1
    x0, width = 190, W - 190 - 70

    def sx(v: float) -> float:
        return x0 + v / vmax * width

    parts = [f'<svg id="{chart_id}" viewBox="0 0 {W} {height}" role="img">']
    for i, (label, value, color) in enumerate(items):
        y = 10 + i * row
        parts.append(
            f'<text x="{x0 - 6}" y="{y + 14}" text-anchor="end" class="tick">{_e(label)}</text>'
        )
        if value is None:
            parts.append(f'<text x="{x0 + 4}" y="{y + 14}" class="tick">no data</text>')
            continue
        parts.append(
            f'<rect class="bar" data-label="{_e(label)}" data-value="{value:.6g}" '
            f'x="{x0}" y="{y + 2}" '
            f'width="{max(sx(value) - x0, 1):.1f}" height="{row - 6}" fill="{color}">'
            f"<title>{_e(label)}: {value:.4g} {unit}</title></rect>"
            f'<text x="{sx(value) + 4:.1f}" y="{y + 14}" class="tick">{value:.3g} {unit}</text>'
        )
    for v, name in lines:
        parts.append(
            f'<line class="threshold" x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="4" y2="{height - 18}" '
            f'stroke="#555" stroke-dasharray="3 3"/><text x="{sx(v):.1f}" y="{height - 4}" '
            f'text-anchor="middle" class="tick">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], table_id: str) -> str:
    if not rows:
        return '<p class="empty">None yet.</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><tr>{th}</tr>{body}</table>'


def render_dashboard(
    monitor: Monitor,
    campaign: str | None = None,
    refresh: int | None = 30,
    start: float | None = None,
    end: float | None = None,
    form: bool = True,
) -> str:
    """The dashboard of a campaign (None: the default one) as one HTML page, its business
    charts over ``[start, end]`` (default: the last 14 days, or the 14 days up to the newest
    decision when the clock is far from the data, ``Monitor.window``); it reloads itself
    every ``refresh`` seconds (None or 0: never). ``form``: a range picker (GET parameters;
    no script)."""
    s = monitor.system
    c = s.campaign(campaign)
    start, end, moved = monitor.window(c.id, start, end)
    rev = monitor.revenue(c.id, start, end)
    scoring = monitor.scoring(c.id, start, end)
    drift = monitor.drift(c.id)
    drift_over = monitor.drift_series(c.id, start, end)
    fresh_over = monitor.freshness_series(c.id, start, end)
    lat = monitor.latency()
    fresh = monitor.freshness()
    runs = monitor.runs()
    conv = monitor.conversion(c.id, start, end)
    lift = monitor.lift(c.id, start, end) if c.control_share > 0 else None
    cal = monitor.calibration(c.id, start, end)
    shadows = monitor.shadows(c.id, start, end)
    st = s.deployments.state(c.id)
    budget_ms = s.settings.scoring_budget_ms

    def ms(q: dict[str, Any], key: str) -> float | None:
        v = q.get(key)
        return None if v is None else v * 1000.0

    latency_items = [
        (f"{name} {p}", ms(q, p), "#1f77b4" if name == "decision" else "#9467bd")
        for name, q in (
            ("decision", lat["decision_seconds"]),
            ("features", lat["feature_lookup_seconds"]),
        )
        for p in ("p50", "p95", "p99")
    ]
    fresh_items = [(p, fresh["age_seconds"].get(p), "#17becf") for p in ("p50", "p95", "p99")]
    drift_items = [(f["feature"], f["psi"], _STATE[f["state"]]) for f in drift["features"]] + [
        ("offer mix", drift["offers"]["psi"], _STATE[drift["offers"]["state"]])
    ]
    alerts = [f["feature"] for f in drift["features"] if f["state"] == "alert"]
    warns = [f["feature"] for f in drift["features"] if f["state"] == "warn"]
    last_buckets: dict[str, dict[str, Any]] = {}
    for p in shadows["series"]:
        last_buckets[p["version"]] = p
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    sections = [
        f"<h1>offerloop · {_e(c.id)}</h1>",
        f'<p class="status">as of {_e(format_ts(s.clock.now()))} · '
        f"released <b>{_e(st.released)}</b>"
        f" · canary {_e(st.canary or '-')}"
        + (f" ({st.canary_share:.0%})" if st.canary else "")
        + f" · shadows {_e(', '.join(st.shadows) or '-')}"
        + f" · {rev['open_decisions']} decisions still inside their attribution window</p>",
        _range_form(c.id, start, end, moved, refresh, form),
        "<h2>Realised revenue per decision, by version and day</h2>",
        _revenue_chart(rev, runs["runs"]),
        "<h2>Lift over the control group (revenue per decision by day)</h2>",
        _lift(lift, start, end),
        "<h2>Scoring time per decision (ms, p99 by version and day, from the decision log)</h2>",
        _lines_chart(
            "scoring-chart",
            {
                v: [(p["bucket_start"] + scoring["bucket_seconds"] / 2, p["p99_ms"]) for p in pts]
                for v, pts in _by_version(scoring["series"]).items()
            },
            start,
            end,
            [(budget_ms, f"budget {budget_ms:g} ms")],
        ),
        "<h2>Drift over time (PSI per feature, each day vs the training window of the "
        "version released then)</h2>",
        _drift_over_time(drift_over, start, end),
        "<h2>Freshness over time: how late events arrived (s, by receipt time) and decisions "
        "that fell back</h2>",
        _freshness_over_time(fresh_over, start, end),
        "<h2>Decision latency (ms, this process)</h2>",
        _bars("latency-chart", latency_items, "ms", [(budget_ms, f"budget {budget_ms:g} ms")]),
        "<h2>Feature freshness (age of the newest event behind served features, s)</h2>",
        _bars("freshness-chart", fresh_items, "s"),
        f"<h2>Drift vs {_e(drift['reference']['basis'])} (PSI)</h2>",
        f'<p class="status">live {_e(drift["live"]["start"])} → {_e(drift["live"]["end"])}, '
        f"{drift['live_rows']} decisions vs {drift['reference_rows']}; "
        f"alert: {_e(', '.join(alerts) or 'none')}; warn: {_e(', '.join(warns) or 'none')}</p>",
        _bars(
            "drift-chart",
            drift_items,
            "",
            [(drift["thresholds"]["warn"], "warn"), (drift["thresholds"]["alert"], "alert")],
        ),
        "<h2>Pipeline runs</h2>",
        _table(
            ("run", "started", "status", "winner", "controller"),
            [
                (
                    r["id"],
                    r["started_at"],
                    r["status"],
                    r["winner"] or r["skipped"] or "-",
                    "; ".join(r["controller"]) or "-",
                )
                for r in reversed(runs["runs"][-15:])
            ],
            "runs-table",
        ),
        "<h2>Shadows on the same traffic (latest day, self-normalised IPS, 95% interval)</h2>",
        _table(
            (
                "version",
                "day",
                "decisions",
                "estimate / decision",
                "95% interval",
                "served / decision",
                "ESS",
                "evidence",
            ),
            [
                (
                    v,
                    format_ts(p["bucket_start"])[:10],
                    p["decisions"],
                    _num(p["snips_per_decision"]),
                    f"{_num(p['lower'])} .. {_num(p['upper'])}",
                    _num(p["served_per_decision"]),
                    f"{p['ess']:.0f}",
                    "enough" if p["usable"] else "thin: " + "; ".join(p["warnings"]),
                )
                for v, p in sorted(last_buckets.items())
            ],
            "shadows-table",
        ),
        "<h2>Calibration: predicted vs realised revenue per decision</h2>",
        _table(
            ("version", "decisions", "predicted", "realised", "realised / predicted"),
            [
                (
                    v["version"],
                    v["calibration"]["decisions"],
                    _num(v["calibration"]["predicted_per_decision"]),
                    _num(v["calibration"]["realised_per_decision"]),
                    _num(v["calibration"]["ratio"], 2),
                )
                for v in cal["versions"]
                if v["calibration"] is not None
            ],
            "calibration-table",
        ),
        "<h2>Conversion by offer</h2>",
        _table(
            ("offer", "decisions", "purchases", "conversion", "revenue / decision"),
            [
                (
                    o["offer"],
                    o["decisions"],
                    o["purchases"],
                    f"{o['conversion']:.1%}",
                    _num(o["revenue_per_decision"]),
                )
                for o in sorted(conv["offers"], key=lambda o: -o["revenue_per_decision"])
            ],
            "conversion-table",
        ),
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>offerloop · {_e(c.id)}</title>{meta}<style>{_CSS}</style></head><body>"
        + "".join(sections)
        + "</body></html>"
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:800px}
h1{font-size:20px}h2{font-size:15px;margin-top:28px;border-bottom:1px solid #ddd}
svg{width:100%;height:auto;background:#fff}.tick{font-size:11px;fill:#555}
.legends{font-size:12px;margin-top:4px}.legend{margin-right:12px}
.status{color:#555}.empty{color:#999}
table{border-collapse:collapse;font-size:12px;width:100%}
td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}
"""


def write_report(
    monitor: Monitor,
    path: str | Path,
    campaign: str | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Path:
    """The dashboard as a static file (no reload, no range form), written atomically;
    returns its path. ``start``/``end``: the range (default as the dashboard's)."""
    target = Path(path).resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        page = render_dashboard(monitor, campaign, refresh=None, start=start, end=end, form=False)
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise InvalidInput(f"cannot write the report to {target}: {exc.strerror}") from exc
    return target
