"""The offline engine on Spark (pyspark, local mode, on this machine's Java 17) gives the
training set the DuckDB engine gives over the same columnar store, and both match the
reference fold: every feature kind, conditions, late, early and duplicate events, values of
the wrong type, players without events."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offerloop.backends import EventRecord
from offerloop.backends._sqlite import SQLiteBackend
from offerloop.features import (
    ColumnarStore,
    OfflineEngine,
    QueryRows,
    columnar_properties,
    reference_features,
)
from tests.features.test_equality import FS, GRID, HOUR, T0, _same

pytestmark = pytest.mark.slow  # a Spark session takes tens of seconds to start here

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from offerloop.features._spark import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


def _log(rng: random.Random, n: int) -> list[EventRecord]:
    amounts = [1, 2.5, 10, 25, 49.99, 0, "bad", None, True, 10.0]
    out: list[EventRecord] = []
    for i in range(n):
        kind = rng.choice(["purchase", "session_start", "level_up", "player_profile"])
        props: dict[str, Any] = {}
        if kind == "purchase":
            props = {"amount": rng.choice(amounts)}
        elif kind == "level_up":
            props = {"level": rng.choice([1, 2, 7, 3.5, "x"])}
        elif kind == "player_profile":
            props = {"country": rng.choice(["us", "de", 5]), "age": rng.choice([20, 31.5, "old"])}
        ts = T0 + rng.randrange(0, 24 * 12) * GRID
        delay = rng.choice([0.0, 0.0, 60.0, GRID, 30 * HOUR, 9 * 24 * HOUR, -120.0])
        eid = out[rng.randrange(len(out))].event_id if out and rng.random() < 0.05 else f"e{i}"
        out.append(EventRecord(eid, f"p{rng.randrange(12)}", kind, ts, props, ts + delay))
    return out


def test_spark_and_duckdb_give_the_same_training_set(spark: Any, tmp_path: Path) -> None:
    from offerloop.features._spark import SparkRunner

    rng = random.Random(11)
    backend = SQLiteBackend(tmp_path / "log", durability="normal")
    backend.append_events(_log(rng, 1500))
    store = ColumnarStore(tmp_path / "columnar", columnar_properties(FS))
    store.sync(backend, batch=400)
    log = list(backend.iter_events())
    backend.close()
    queries = [(f"p{rng.randrange(14)}", T0 + rng.randrange(0, 24 * 22) * GRID) for _ in range(400)]
    rows = QueryRows(
        [p for p, _ in queries], np.array([t for _, t in queries]), [{"hour": 7}] * len(queries)
    )
    duck = OfflineEngine(FS, threads=1)
    duck.use_columnar(store)
    on_duck = duck.rows(duck.compute(rows))
    duck.close()
    runner = SparkRunner(spark, scratch=tmp_path / "scratch")
    on_spark_engine = OfflineEngine(FS, runner=runner)
    on_spark_engine.use_columnar(store)
    on_spark = on_spark_engine.rows(on_spark_engine.compute(rows))
    on_spark_engine.close()
    with pytest.raises(ValueError, match="columnar store only"):
        OfflineEngine(FS, runner=SparkRunner(spark)).use_sqlite(tmp_path / "log")
    for k, (player, t) in enumerate(queries):
        ref = reference_features(FS, [e for e in log if e.player_id == player], t, {"hour": 7})
        for name in FS.names:
            assert _same(on_spark[k][name], on_duck[k][name]), (name, player, t)
            assert _same(on_spark[k][name], ref[name]), (name, player, t)
