"""The offline engine on Spark: the same SQL (``features._offline``) over the columnar store's
Parquet files, for logs larger than one machine.

:class:`SparkRunner` is the engine's ``SqlRunner`` for a ``SparkSession`` the caller owns: a
local one (``spark_session()``: the tests, one machine's cores) or one attached to a cluster
(``SparkSession.builder.remote("sc://…")`` for Spark Connect, or ``master("yarn")`` /
``master("k8s://…")``), which must read the store's files at the same paths (a shared file
system or object storage; ``ColumnarStore`` writes plain Parquet). The rows to compute and
the results travel as Parquet files in ``scratch`` (a directory both sides see), never
through the driver's memory row by row.

    from offerloop.features import OfflineEngine
    from offerloop.features._spark import SparkRunner, spark_session

    engine = OfflineEngine(features, runner=SparkRunner(spark_session(), scratch="/shared/tmp"))
    engine.use_columnar(store)
    columns = engine.compute(rows)          # the same values as the DuckDB engine's

pyspark is imported only here (a test dependency, optional for users).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
from numpy.typing import NDArray

__all__ = ["SparkRunner", "spark_session"]


def spark_session(master: str = "local[2]", **conf: str) -> Any:
    """A Spark session for the engine (local by default; quiet, no UI)."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("offerloop-offline")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
    )
    for k, v in conf.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class SparkRunner:
    """Runs the offline engine's SQL in a Spark session (see the module doc)."""

    def __init__(self, spark: Any, scratch: str | Path | None = None) -> None:
        self.spark = spark
        self._own = scratch is None
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix="offerloop-spark-"))
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._views: list[str] = []

    def _path(self, name: str) -> Path:
        return self.scratch / f"{name}-{uuid.uuid4().hex[:8]}.parquet"

    def execute(self, sql: str) -> None:
        self.spark.sql(sql)

    def register(self, name: str, cols: Mapping[str, NDArray[Any]]) -> None:
        path = self._path(name)
        with duckdb.connect() as con:
            con.register("c", dict(cols))
            con.execute(f"COPY c TO '{path}' (FORMAT parquet)")
        self.spark.read.parquet(str(path)).createOrReplaceTempView(name)
        self._views.append(name)

    def fetch(self, sql: str) -> dict[str, NDArray[Any]]:
        path = self._path("result")
        self.spark.sql(sql).write.parquet(str(path))
        with duckdb.connect() as con:
            return dict(con.execute(f"SELECT * FROM '{path}/*.parquet'").fetchnumpy())

    def parquet(self, files: Sequence[str]) -> str:
        view = f"files_{uuid.uuid4().hex[:8]}"
        self.spark.read.parquet(*files).createOrReplaceTempView(view)
        self._views.append(view)
        return view

    def struct(self, **fields: str) -> str:
        return "named_struct(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"

    def arg_max(self, value: str, key: str) -> str:
        return f"max_by({value}, {key})"

    def distinct_count(self, arg: str, over: str) -> str:
        # Spark has no DISTINCT window aggregates; a set's size counts the same values
        return f"size(collect_set({arg}){over})"

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def temp_table(self, name: str, select: str) -> None:
        self.spark.sql(select).createOrReplaceTempView(name)
        self._views.append(name)

    def close(self) -> None:
        """Drop the views it made and its scratch files (the session stays the caller's)."""
        for v in self._views:
            self.spark.catalog.dropTempView(v)
        self._views = []
        if self._own:
            shutil.rmtree(self.scratch, ignore_errors=True)
