"""The shadow worker process never outlives its server and never creates a store (issue 13,
finding 10: it outlived its server's shutdown, and recreated a schema a test had dropped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from offerloop import load_settings
from offerloop.decisions._shadow_worker import WorkerSink
from offerloop.monitoring import Metrics
from offerloop.testing import FaultProxy
from tests.conftest import PG_URL, unique_name

pytestmark = [pytest.mark.needs("postgres"), pytest.mark.slow]

_PARENT = textwrap.dedent(
    """
    import json, sys
    from offerloop import load_settings
    from offerloop.monitoring import Metrics
    from offerloop.decisions._shadow_worker import WorkerSink

    class Item:
        decision_id, campaign, row, shown = "d1", "spring_sale", {}, 0
        shadows = (("rules-2", None),)

    sink = WorkerSink(load_settings(env={}, **json.loads(sys.argv[1])), Metrics(), 1)
    sink.score([Item()])  # the worker is up, with its store open
    print(sink._proc.pid, flush=True)
    sys.stdin.readline()  # the test stalls the database, then says go
    sink.score([Item()])  # the worker now waits on the stalled database
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_dies_with_its_server_even_while_busy(tmp_path: Path) -> None:
    schema = unique_name("sw")
    proxy = FaultProxy(5432)
    url = PG_URL.replace(":5432", f":{proxy.port}")
    settings = {
        "data_dir": str(tmp_path / "d"),
        "database_url": url,
        "database_schema": schema,
        "database_timeout_seconds": 3600.0,  # its own deadline will not rescue it
    }
    from offerloop.backends import open_backend

    open_backend(load_settings(env={}, **settings)).close()  # the schema exists
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdin is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        proxy.stall()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        time.sleep(1.0)  # let the worker get into its stalled query (no timing is checked)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(60)
        deadline = time.monotonic() + 60
        while _alive(child):
            assert time.monotonic() < deadline, "the shadow worker outlived its server"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(60)
        for f in (parent.stdin, parent.stdout):
            if f is not None:
                f.close()
        proxy.close()
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_worker_never_creates_a_schema(tmp_path: Path) -> None:
    schema = unique_name("sw")
    settings = load_settings(
        env={}, data_dir=str(tmp_path / "d"), database_url=PG_URL, database_schema=schema
    )
    sink = WorkerSink(settings, Metrics(), 1)

    class Item:
        decision_id, campaign, row, shown = "d1", "spring_sale", {}, 0
        shadows = (("rules-2", None),)

    try:
        assert sink.score([Item()]) == 0  # it could not open its store: nothing scored
    finally:
        sink.close()
    with psycopg.connect(PG_URL, autocommit=True) as c:
        rows = c.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchall()
    assert rows == []
