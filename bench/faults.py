"""Faults under load, through real network faults (issue 13): `python bench/faults.py`.

Each scenario runs `offerloop serve` in its own process (PostgreSQL and Redis behind TCP
proxies in processes of their own, or the embedded backend), drives it with a steady client
load (decisions, and event batches whose purchases answer earlier decisions, retried with the
same event ids on an error, as a real client would), injects one fault for a while, lets it
recover, and then counts, from the stores themselves:

* acknowledged: decisions answered 200 and events acknowledged (accepted or duplicate);
* stored / lost: of those, how many the database holds at the end (lost must be 0);
* duplicated: events folded twice into a player's online state (online count above the
  log's), and decisions stored twice (impossible by key; checked anyway);
* 5xx: answers 500–599 of any kind, 503 included;
* p99 of decide during the fault (client-side, what the game sees);
* recovery: from the fault's end until the journals are empty and the online state has
  folded everything the log holds.

Scenarios: on PostgreSQL + Redis, each of cut / stall / slow (250 ms per chunk) / reset of
PostgreSQL and of Redis, a kill -9 of the server mid-load (restarted at once), hostile
requests mixed into the load, and slow clients (connections that trickle headers); on the
embedded backend the last three. `--quick` runs a short version of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """A FaultProxy in a process of its own (offerloop.testing._proxy)."""

    def __init__(self, target: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "offerloop.testing._proxy", str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def __call__(self, command: str) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Server:
    kind: str
    data: Path
    env: dict[str, str]
    port: int = field(default_factory=_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.data.parent / "serve.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "offerloop", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        from offerloop.testing import wait_healthy

        wait_healthy(self.proc, self.base)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


@dataclass
class Tally:
    decisions: list[str] = field(default_factory=list)  # acknowledged decision ids
    events: set[str] = field(default_factory=set)  # acknowledged event ids
    purchases: dict[str, int] = field(default_factory=dict)  # player -> acknowledged buys
    statuses: dict[int, int] = field(default_factory=dict)
    decide_ms: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    errors: int = 0  # connection errors (a killed server)
    hostile: int = 0
    server_errors: list[str] = field(default_factory=list)  # the first 5xx answers, to show

    def status(self, code: int, text: str = "") -> None:
        self.statuses[code] = self.statuses.get(code, 0) + 1
        if code >= 500 and len(self.server_errors) < 5:
            self.server_errors.append(f"{code} {text[:200]}")


HOSTILE = [
    b'{"player_id": "p\\u0000x"}',
    b'{"player_id": "p", "context": {"local_hour": 1' + b"0" * 400 + b"}}",
    b'{"events": [{"event_id": "h\\u0000", "player_id": "p", "type": "purchase", '
    b'"ts": "0001-01-01T00:00:00+01:00", "properties": {"amount": 1' + b"0" * 400 + b"}}]}",
    b'{"events": [{"event_id": "h2", "player_id": "p", "type": "x", "ts": '
    b'"2026-01-01T00:00:00Z", "properties": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}]}",
]


async def drive(base: str, seconds: float, rate: float, tally: Tally, hostile: bool) -> None:
    """Decisions at ``rate``/s, an event batch every 10 decisions (a session start and a
    purchase of an earlier decision's offer), each retried on an error with its ids."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        start = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        i = 0
        answered: list[dict[str, Any]] = []
        while (now := time.monotonic()) - start < seconds:
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(_decide(client, f"p{i % 200}", tally, answered)))
            if i % 10 == 9:
                tasks.append(asyncio.create_task(_events(client, i, answered, tally)))
            if hostile and i % 5 == 0:
                tasks.append(asyncio.create_task(_hostile(client, i, tally)))
            i += 1
            tasks = [t for t in tasks if not t.done()]
        await asyncio.gather(*tasks)


async def _decide(
    client: httpx.AsyncClient, player: str, tally: Tally, answered: list[dict[str, Any]]
) -> None:
    sent = time.monotonic()
    try:
        r = await client.post("/v1/decide", json={"player_id": player})
    except httpx.TransportError:
        tally.errors += 1
        return
    tally.decide_ms.append((sent, (time.monotonic() - sent) * 1000))
    tally.status(r.status_code, r.text)
    if r.status_code == 200:
        d = r.json()
        tally.decisions.append(d["decision_id"])
        answered.append({"player": player, **d})


async def _events(
    client: httpx.AsyncClient, i: int, answered: list[dict[str, Any]], tally: Tally
) -> None:
    if not answered:
        return
    d = random.Random(i).choice(answered[-50:])
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    events = [
        {"event_id": f"s{i}", "player_id": d["player"], "type": "session_start", "ts": ts},
        {
            "event_id": f"b{i}",
            "player_id": d["player"],
            "type": "purchase",
            "ts": ts,
            "properties": {"amount": d["price"], "decision_id": d["decision_id"]},
        },
    ]
    for attempt in range(20):  # a client that retries the same ids until acknowledged
        try:
            r = await client.post("/v1/events", json={"events": events})
        except httpx.TransportError:
            tally.errors += 1
        else:
            tally.status(r.status_code, r.text)
            if r.status_code == 200:
                tally.events.update(e["event_id"] for e in events)
                if r.json()["accepted"]:
                    tally.purchases[d["player"]] = tally.purchases.get(d["player"], 0) + 1
                return
        await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))


async def _hostile(client: httpx.AsyncClient, i: int, tally: Tally) -> None:
    body = HOSTILE[i % len(HOSTILE)]
    url = "/v1/decide" if b"player_id" in body[:20] else "/v1/events"
    try:
        r = await client.post(url, content=body, headers={"content-type": "application/json"})
    except httpx.TransportError:
        tally.errors += 1
        return
    tally.hostile += 1
    if r.status_code >= 500:
        tally.status(r.status_code, r.text)


def _slow_clients(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/")
        out.append(s)
    return out


def _settle(server: Server, seconds: float = 120.0) -> float:
    """Seconds until the journals are empty and the online state has folded the log."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            h = httpx.get(f"{server.base}/healthz", timeout=10).json()
            m = httpx.get(f"{server.base}/metrics", timeout=10).text
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        lines = m.splitlines()
        prefix = "offerloop_online_lag_events "
        lag = next((float(x.split()[-1]) for x in lines if x.startswith(prefix)), 0.0)
        if (
            h["decisions_not_yet_stored"] == 0
            and h["events_not_yet_stored"] == 0
            and lag == 0
            and h["status"] == "ok"
        ):
            return time.monotonic() - start
        time.sleep(0.2)
    return float("inf")


def scenario(
    kind: str, target: str, fault: str, warm: float, hold: float, after: float
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    name = f"faults_{os.getpid()}_{random.randrange(1 << 30):x}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    env.update(OFFERLOOP_DATA_DIR=str(tmp / "data"), OFFERLOOP_DATABASE_TIMEOUT_SECONDS="2")
    proxies: dict[str, Proxy] = {}
    direct = {"data_dir": str(tmp / "data")}
    if kind == "postgres+redis":
        direct.update(
            database_url=PG_URL,
            database_schema=name,
            redis_url=REDIS_URL,
            redis_prefix=f"{name}:",
        )
        proxies = {"postgres": Proxy(5432), "redis": Proxy(6379)}
        env.update(
            OFFERLOOP_DATABASE_URL=PG_URL.replace(":5432", f":{proxies['postgres'].port}"),
            OFFERLOOP_DATABASE_SCHEMA=name,
            OFFERLOOP_REDIS_URL=REDIS_URL.replace(":6379", f":{proxies['redis'].port}"),
            OFFERLOOP_REDIS_PREFIX=f"{name}:",
        )
    server = Server(kind, tmp / "data", env)
    tally = Tally()
    slow: list[socket.socket] = []
    restart = 0.0
    server.start()
    try:
        # the client load runs in a thread of its own: injecting a fault (restarting a server)
        # must not pause the clients
        total = warm + hold + after
        driver = threading.Thread(
            target=asyncio.run,
            args=(drive(server.base, total, 100.0, tally, fault == "hostile"),),
            daemon=True,
        )
        driver.start()
        time.sleep(warm)
        fault_at = time.monotonic()
        if target in proxies:
            proxies[target]("slow 0.25" if fault == "slow" else fault)
        elif fault == "kill -9":
            server.kill()
            t = time.monotonic()
            server.start()  # as a supervisor would, at once
            restart = time.monotonic() - t
        elif fault == "slow clients":
            slow = _slow_clients(server.port, 50)
        time.sleep(max(0.0, hold - (time.monotonic() - fault_at)))
        fault_end = time.monotonic()
        if target in proxies:
            proxies[target]("restore")
        for s in slow:
            s.close()
        driver.join()
        recovery = _settle(server) + (time.monotonic() - fault_end) - after
        online = _online(server, tally)
    finally:
        server.stop()
        for p in proxies.values():
            p.close()
    stored_decisions, stored_events, log_buys = _stored(direct, tally)
    during = [ms for sent, ms in tally.decide_ms if fault_at <= sent <= fault_end]
    p99 = sorted(during)[int(0.99 * (len(during) - 1))] if during else float("nan")
    acked = len(tally.decisions) + len(tally.events)
    stored = stored_decisions + stored_events
    over = sum(max(0, online.get(p, 0) - n) for p, n in log_buys.items())
    return {
        "backend": kind,
        "scenario": f"{target} {fault}".strip(),
        "acknowledged": acked,
        "stored": stored,
        "lost": acked - stored,
        "duplicated": over,
        "online_diverged": sum(1 for p, n in log_buys.items() if online.get(p, 0) != n),
        "5xx": sum(n for code, n in tally.statuses.items() if code >= 500),
        "hostile_sent": tally.hostile,
        "connection_errors": tally.errors,
        "decide_p99_ms_during_fault": round(p99, 1),
        "recovery_s": round(max(0.0, recovery), 1),
        "restart_s": round(restart, 1),
        "statuses": tally.statuses,
        "decisions_answered": len(tally.decisions),
        "log": str(tmp / "serve.log"),
        "server_errors": tally.server_errors,
    }


def _online(server: Server, tally: Tally) -> dict[str, int]:
    out = {}
    for p in {f"p{i}" for i in range(200)}:
        r = httpx.get(f"{server.base}/v1/players/{p}/features", timeout=30)
        out[p] = int(r.json()["features"]["purchases_total"]["value"])
    return out


def _stored(direct: dict[str, str], tally: Tally) -> tuple[int, int, dict[str, int]]:
    """What the database holds (opened after the server stopped, without the proxies: its
    journals are in, or are replayed now as a restarted server would)."""
    from offerloop import Offerloop, load_settings

    system = Offerloop(load_settings(env={}, **direct))
    try:
        backend = system.backend
        decisions = len(backend.get_decisions(tally.decisions))
        ids: set[str] = set()
        buys: dict[str, int] = {}
        for e in backend.iter_events():
            ids.add(e.event_id)
            if e.type == "purchase":
                buys[e.player_id] = buys.get(e.player_id, 0) + 1
        events = len(tally.events & ids)
        drop = getattr(backend, "drop_schema", None)
        if drop is not None:
            drop()
    finally:
        system.close()
    return decisions, events, buys


def overload(seconds: int) -> dict[str, Any]:
    """Decide requests offered at five times what the server answers back to back (20
    connections without pause), from 500 connections (hey): how many are shed, and the p99 of
    the answered ones (the shedding must keep it bounded)."""
    import csv
    import io
    import shutil

    if shutil.which("hey") is None:
        return {"scenario": "overload 5x", "skipped": "hey is not installed (make bench)"}
    tmp = Path(tempfile.mkdtemp(prefix="overload-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    env.update(OFFERLOOP_DATA_DIR=str(tmp / "data"))
    server = Server("embedded", tmp / "data", env)
    server.start()
    url = f"{server.base}/v1/decide"

    def hey(*args: str) -> list[dict[str, str]]:
        body = ["-m", "POST", "-T", "application/json", "-d", '{"player_id": "p1"}']
        out = subprocess.run(
            ["hey", *args, *body, "-o", "csv", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return list(csv.DictReader(io.StringIO(out)))

    try:
        t = time.monotonic()
        base = hey("-n", "20000", "-c", "20")
        capacity = len(base) / (time.monotonic() - t)
        offered = int(5 * capacity)
        rows = hey("-z", f"{seconds}s", "-c", "500", "-q", str(max(1, offered // 500)))
    finally:
        server.stop()
    ok = sorted(float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200")
    shed = sum(1 for r in rows if r["status-code"] == "503")
    other = sum(1 for r in rows if r["status-code"] not in ("200", "503"))
    return {
        "scenario": "overload 5x",
        "capacity_per_s": round(capacity),
        "offered_per_s": offered,
        "answered": len(ok),
        "shed_503": shed,
        "other_errors": other,
        "answered_p50_ms": round(ok[len(ok) // 2], 1) if ok else None,
        "answered_p99_ms": round(ok[int(0.99 * (len(ok) - 1))], 1) if ok else None,
    }


SCENARIOS = [
    ("postgres+redis", "postgres", "cut"),
    ("postgres+redis", "postgres", "stall"),
    ("postgres+redis", "postgres", "slow"),
    ("postgres+redis", "postgres", "reset"),
    ("postgres+redis", "redis", "cut"),
    ("postgres+redis", "redis", "stall"),
    ("postgres+redis", "redis", "slow"),
    ("postgres+redis", "redis", "reset"),
    ("postgres+redis", "", "kill -9"),
    ("postgres+redis", "", "hostile"),
    ("postgres+redis", "", "slow clients"),
    ("embedded", "", "kill -9"),
    ("embedded", "", "hostile"),
    ("embedded", "", "slow clients"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short phases (a smoke run)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--only", help="run scenarios whose name contains this")
    args = ap.parse_args()
    warm, hold, after = (2.0, 3.0, 2.0) if args.quick else (3.0, 10.0, 5.0)
    rows = []
    cols = [
        "backend",
        "scenario",
        "acknowledged",
        "stored",
        "lost",
        "duplicated",
        "online_diverged",
        "5xx",
        "connection_errors",
        "decide_p99_ms_during_fault",
        "recovery_s",
    ]
    print(" | ".join(cols), flush=True)
    for kind, target, fault in SCENARIOS:
        if args.only and args.only not in f"{kind} {target} {fault}":
            continue
        row = scenario(kind, target, fault, warm, hold, after)
        rows.append(row)
        print(" | ".join(str(row[c]) for c in cols), flush=True)
    if not args.only or "overload" in args.only:
        over = overload(5 if args.quick else 15)
        print(json.dumps(over), flush=True)
        rows.append(over)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    bad = [
        r
        for r in rows
        if r.get("lost") or r.get("duplicated") or r.get("5xx") or r.get("online_diverged")
    ]
    print("all scenarios: 0 lost, 0 duplicated, 0 5xx" if not bad else f"FAILED: {bad}")


if __name__ == "__main__":
    main()
