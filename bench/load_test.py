"""Load test over loopback HTTP, with a real load generator in its own process (docs/benchmarks.md).

    .venv/bin/python bench/load_test.py [--rate 1000] [--seconds 20] [--no-feast]

For each backend (embedded; PostgreSQL + Redis), an `offerloop serve` process is set up in the
issue-8 configuration (30 features, 24 offers, LightGBM release, LightGBM canary for 20 %, two
shadows; see decide_latency.py) and loaded by:

* `hey` (Debian's package) at a fixed rate (`--rate` requests/s) on `POST /v1/decide`, every
  request's latency written as CSV: throughput, errors, p50/p95/p99/p99.9 computed here. Twice:
  2 connections × rate/2 (close to evenly spaced arrivals), then 10 connections × rate/10
  (hey ticks all workers at once: bursts of 10 simultaneous requests);
* `wrk` (closed loop, 4 connections, a Lua script giving every event a new id) on
  `POST /v1/events` with batches of 10 events: the most it sustains, and its percentiles.

Then Feast's feature server (`feast serve`, SQLite online store, the same 30 feature values
for the same players) gets the same two `hey` loads on `POST /get-online-features`, in the
same run, and the p99 ratios are printed. Feast only fetches features; we decide (features + models
+ durable log).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.decide_latency import _drop, _setup

RESULTS = Path(__file__).parent / "results"
WRK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local events = {}
  for j = 1, 10 do
    events[j] = string.format(
      '{"event_id":"w%d-%d-%d","player_id":"p%d","type":"session_start","ts":"%s"}',
      id, counter, j, (counter * 10 + j) % 2000, now)
  end
  local body = '{"events":[' .. table.concat(events, ",") .. ']}'
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
setup = function(thread)
  thread:set("id", math.random(1, 1000000000))
end
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK {"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, '
    .. '"p50": %f, "p95": %f, "p99": %f, "p999": %f}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {url}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not come up: {url}")
        time.sleep(0.2)


def hey(url: str, body: str, rate: int, seconds: int, workers: int = 10) -> dict[str, float]:
    """``workers`` connections at ``rate / workers`` requests/s each. hey starts every
    worker's clock at once, so requests arrive in bursts of ``workers``: 10 is the harsher
    pattern, 2 is close to evenly spaced arrivals."""
    n = rate * seconds
    t = time.perf_counter()
    out = subprocess.run(
        [
            "hey",
            "-n",
            str(n),
            "-c",
            str(workers),
            "-q",
            str(rate // workers),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            body,
            "-o",
            "csv",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.perf_counter() - t
    rows = list(csv.DictReader(io.StringIO(out)))
    lat = np.array([float(r["response-time"]) for r in rows]) * 1000
    errors = sum(1 for r in rows if r["status-code"] != "200")
    return {
        "requests": len(rows),
        "throughput_per_s": len(rows) / wall,
        "errors": errors,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "p999_ms": float(np.percentile(lat, 99.9)),
    }


def wrk(base: str, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / "events.lua"
    script.write_text(WRK_LUA)
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", "4", "-d", f"{seconds}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    r = json.loads(line[4:])
    return {
        "requests": r["requests"],
        "events_per_s": r["requests"] * 10 / r["seconds"],
        "errors": r["errors"] + r["non2xx"],
        "p50_ms": r["p50"],
        "p95_ms": r["p95"],
        "p99_ms": r["p99"],
        "p999_ms": r["p999"],
    }


def start_serve(settings: Any, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """`offerloop serve` in its own process on these settings (features, data, backends)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    env.update(OFFERLOOP_FEATURES=settings.features, OFFERLOOP_DATA_DIR=settings.data_dir)
    if settings.database_url:
        env.update(
            OFFERLOOP_DATABASE_URL=settings.database_url,
            OFFERLOOP_DATABASE_SCHEMA=settings.database_schema,
            OFFERLOOP_REDIS_URL=settings.redis_url,
            OFFERLOOP_REDIS_PREFIX=settings.redis_prefix,
        )
    port = _port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "offerloop", "serve"),
            *("--port", str(port), "--workers", str(workers)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def serve_ours(
    kind: str, tmp: Path, rate: int, seconds: int, workers: int = 1
) -> tuple[dict[str, Any], Any]:
    system = _setup(kind, tmp)
    settings = system.settings
    rows = {f"p{i}": system.player_features.of(f"p{i}", system.clock.now()) for i in range(2000)}
    system.close()
    proc, base = start_serve(settings, workers)
    try:
        _wait(f"{base}/healthz", proc)
        for i in range(300):  # warm up
            httpx.post(f"{base}/v1/decide", json={"player_id": f"p{i}"}, timeout=5)
        time.sleep(5)  # the serving models' native code is compiled in the background
        decide = hey(f"{base}/v1/decide", '{"player_id": "p42"}', rate, seconds, workers=2)
        bursts = hey(f"{base}/v1/decide", '{"player_id": "p42"}', rate, seconds, workers=10)
        events = wrk(base, seconds, tmp)
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        from offerloop import Offerloop

        _drop(Offerloop(settings))
    server_p99 = _server_quantile(metrics, 0.99)
    res = {
        "decide": decide,
        "decide_bursts_of_10": bursts,
        "events": events,
        "server_decide_p99_ms": server_p99,
    }
    label = kind if workers == 1 else f"{kind} x{workers}"
    print(
        f"{label:>15}: /v1/decide at {decide['throughput_per_s']:.0f}/s: p50 "
        f"{decide['p50_ms']:.2f} p95 {decide['p95_ms']:.2f} p99 {decide['p99_ms']:.2f} "
        f"p99.9 {decide['p999_ms']:.2f} ms, {decide['errors']} errors (2 connections; 10: p50 "
        f"{bursts['p50_ms']:.2f} p99 {bursts['p99_ms']:.2f} ms, {bursts['errors']} errors); "
        "server-side p99 <= "
        f"{server_p99:.2f} ms | /v1/events closed loop: {events['events_per_s']:,.0f} events/s, "
        f"p50 {events['p50_ms']:.2f} p99 {events['p99_ms']:.2f} p99.9 {events['p999_ms']:.2f} "
        f"ms, {events['errors']} errors"
    )
    return res, rows


def _server_quantile(metrics: str, q: float) -> float:
    """Upper bucket bound holding the q-quantile of offerloop_decision_duration_seconds."""
    buckets: list[tuple[float, float]] = []
    for line in metrics.splitlines():
        if line.startswith("offerloop_decision_duration_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if total and count >= q * total:
            return le * 1000
    return float("nan")


def serve_feast(
    rows: dict[str, dict[str, Any]], tmp: Path, rate: int, seconds: int
) -> dict[str, Any]:
    import pandas as pd

    repo = tmp / "feast"
    repo.mkdir()
    names = sorted(next(iter(rows.values())))
    frame = pd.DataFrame([{"player_id": p, **{n: r[n] for n in names}} for p, r in rows.items()])
    for n in names:
        if frame[n].dtype == object:
            frame[n] = frame[n].astype(str)
    frame["event_timestamp"] = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)
    frame.to_parquet(repo / "snap.parquet")
    (repo / "feature_store.yaml").write_text(
        "project: offerloop_load\nregistry: registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: online.db\n"
        "entity_key_serialization_version: 3\n"
    )
    types = {"int64": "Int64", "float64": "Float64", "object": "String"}
    fields = ",\n        ".join(
        f'Field(name="{n}", dtype={types[str(frame[n].dtype)]})' for n in names
    )
    (repo / "repo.py").write_text(
        "from feast import Entity, FeatureView, Field, FileSource\n"
        "from feast.types import Float64, Int64, String\n"
        'player = Entity(name="player", join_keys=["player_id"])\n'
        f'source = FileSource(path="{repo / "snap.parquet"}", timestamp_field="event_timestamp")\n'
        "player_features = FeatureView(name='player_features', entities=[player], "
        f"schema=[\n        {fields}\n    ], source=source, online=True, ttl=None)\n"
    )
    feast = shutil.which("feast", path=str(Path(sys.executable).parent))
    assert feast, "feast is not installed (make bench installs the bench group)"
    subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True)
    subprocess.run(
        [feast, "materialize-incremental", pd.Timestamp.now(tz="UTC").isoformat()],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    port = _port()
    proc = subprocess.Popen(
        [feast, "serve", "-p", str(port), "--no-access-log"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    body = json.dumps(
        {
            "features": [f"player_features:{n}" for n in names],
            "entities": {"player_id": ["p42"]},
        }
    )
    try:
        _wait(f"{base}/health", proc)
        h = {"Content-Type": "application/json"}
        check = httpx.post(f"{base}/get-online-features", content=body, headers=h, timeout=10)
        check.raise_for_status()
        got = check.json()
        assert len(got["metadata"]["feature_names"]) == len(names) + 1, got["metadata"]
        for _ in range(300):
            httpx.post(f"{base}/get-online-features", content=body, headers=h, timeout=10)
        res: dict[str, Any] = hey(f"{base}/get-online-features", body, rate, seconds, workers=2)
        res["bursts_of_10"] = hey(f"{base}/get-online-features", body, rate, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(
        f"{'Feast serve':>15}: /get-online-features ({len(names)} features) at "
        f"{res['throughput_per_s']:.0f}/s: p50 {res['p50_ms']:.2f} p95 {res['p95_ms']:.2f} "
        f"p99 {res['p99_ms']:.2f} p99.9 {res['p999_ms']:.2f} ms, {res['errors']} errors "
        f"(2 connections; 10: {res['bursts_of_10']['throughput_per_s']:.0f}/s p99 "
        f"{res['bursts_of_10']['p99_ms']:.2f} ms)"
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--no-feast", action="store_true")
    args = ap.parse_args()
    for tool in ("hey", "wrk"):
        assert shutil.which(tool), f"{tool} is missing (make bench installs it)"
    out: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows: dict[str, Any] = {}
        for kind in ("embedded", "postgres+redis"):
            (tmp / kind).mkdir()
            out[kind], rows = serve_ours(kind, tmp / kind, args.rate, args.seconds)
        # the same with two service processes on the port (PostgreSQL + Redis only)
        (tmp / "workers2").mkdir()
        out["postgres+redis, 2 processes"], _ = serve_ours(
            "postgres+redis", tmp / "workers2", args.rate, args.seconds, workers=2
        )
        if not args.no_feast:
            out["feast"] = serve_feast(rows, tmp, args.rate, args.seconds)
            for kind in ("embedded", "postgres+redis"):
                ratio = out["feast"]["p99_ms"] / out[kind]["decide"]["p99_ms"]
                burst = (
                    out["feast"]["bursts_of_10"]["p99_ms"]
                    / out[kind]["decide_bursts_of_10"]["p99_ms"]
                )
                out[f"p99_ratio_feast_over_{kind}"] = ratio
                out[f"p99_ratio_feast_over_{kind}_bursts_of_10"] = burst
                print(
                    f"p99 Feast features-only / offerloop decide ({kind}): {ratio:.2f}x "
                    f"(bursts of 10: {burst:.2f}x)"
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load_test.json").write_text(json.dumps(out, indent=2))
    print(f"results -> {RESULTS / 'load_test.json'}")


if __name__ == "__main__":
    main()
