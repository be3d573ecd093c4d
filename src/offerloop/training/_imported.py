"""Logged bandit data from other systems: import a CSV or Parquet file once, then train and
evaluate on it exactly like on offerloop's own decision log.

An imported log is stored under ``<data_dir>/logs/NAME.json`` (canonical JSON: rows and the
feature schema), written atomically. Feature columns are numeric, categorical, or hashed
strings (``h<k>`` for ``k = sha1(value) mod buckets``: high-cardinality ids in a bounded
number of categories).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from offerloop._clock import parse_rfc3339
from offerloop._errors import Conflict, InvalidInput, NotFound, Problem
from offerloop.features import Encoder
from offerloop.policies import LoggedData

__all__ = ["ImportSpec", "ImportedLog", "import_log", "load_log"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class ImportSpec:
    ts: str
    action: str
    reward: str
    propensity: str
    numeric: Sequence[str] = ()
    categorical: Sequence[str] = ()
    hashed: Sequence[str] = ()
    hash_buckets: int = 16


@dataclass(frozen=True)
class ImportedLog:
    name: str
    data: LoggedData
    actions: list[str]
    encoder: Encoder
    source: str


def _hash(value: object, buckets: int) -> str:
    digest = hashlib.sha1(str(value).encode()).digest()
    return f"h{int.from_bytes(digest[:8], 'big') % buckets}"


def _ts(v: Any, i: int) -> float:
    if isinstance(v, np.datetime64):
        return float(v.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(v, str):
        try:
            return parse_rfc3339(v)
        except ValueError as exc:
            raise InvalidInput.of([Problem(f"row {i}: timestamp", str(exc))]) from exc
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    raise InvalidInput.of([Problem(f"row {i}: timestamp", f"{v!r} is not a time")])


def import_log(
    data_dir: str | Path, name: str, path: str | Path, spec: ImportSpec, replace: bool = False
) -> ImportedLog:
    if not _NAME.match(name):
        raise InvalidInput(f"log name {name!r} must be a lowercase identifier")
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    out = Path(data_dir) / "logs" / f"{name}.json"
    if out.exists() and not replace:
        raise Conflict(f"log {name!r} exists; pass --replace to overwrite it")
    reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
    lit = str(path).replace("'", "''")
    try:
        with duckdb.connect() as con:
            table = con.execute(f"SELECT * FROM {reader}('{lit}')").fetchnumpy()
    except duckdb.Error as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from exc
    wanted = [
        spec.ts,
        spec.action,
        spec.reward,
        spec.propensity,
        *spec.numeric,
        *spec.categorical,
        *spec.hashed,
    ]
    missing = [c for c in wanted if c not in table]
    if missing:
        raise InvalidInput.of(
            [
                Problem(f"{path.name}: {c}", f"no such column (have: {', '.join(table)})")
                for c in missing
            ]
        )
    n = len(table[spec.action])
    col = {c: _plain(table[c]) for c in wanted}
    problems: list[Problem] = []
    rows: list[dict[str, Any]] = []
    for i in range(n):
        p, r, a = col[spec.propensity][i], col[spec.reward][i], col[spec.action][i]
        if not (isinstance(p, int | float) and 0 < p <= 1):
            problems.append(Problem(f"row {i}: {spec.propensity}", f"{p!r} is not in (0, 1]"))
        if not (isinstance(r, int | float) and math.isfinite(r)):
            problems.append(Problem(f"row {i}: {spec.reward}", f"{r!r} is not a number"))
        if a is None or str(a) == "":
            problems.append(Problem(f"row {i}: {spec.action}", "is missing"))
        if len(problems) > 20:
            break
        feats: dict[str, Any] = {}
        for c in spec.numeric:
            v = col[c][i]
            feats[c] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
        for c in spec.categorical:
            feats[c] = "" if col[c][i] is None else str(col[c][i])
        for c in spec.hashed:
            feats[c] = _hash(col[c][i], spec.hash_buckets)
        rows.append(
            {
                "ts": _ts(col[spec.ts][i], i),
                "action": str(a),
                "reward": r,
                "propensity": p,
                "features": feats,
            }
        )
    if problems:
        raise InvalidInput.of(problems)
    schema = [
        {"name": c, "type": "float", "default": 0.0, "transform": "identity", "scale": 1.0}
        for c in spec.numeric
    ]
    for c in spec.categorical:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["features"][c]] = counts.get(row["features"][c], 0) + 1
        top = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
        schema.append({"name": c, "type": "category", "default": "", "categories": top})
    for c in spec.hashed:
        schema.append(
            {
                "name": c,
                "type": "category",
                "default": "",
                "categories": [f"h{k}" for k in range(spec.hash_buckets)],
            }
        )
    doc = {
        "format": "offerloop.log/1",
        "name": name,
        "source": str(path),
        "actions": sorted({row["action"] for row in rows}),
        "schema": schema,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, out)
    return load_log(data_dir, name)


def _plain(a: Any) -> list[Any]:
    mask = np.ma.getmaskarray(a) if isinstance(a, np.ma.MaskedArray) else None
    data = np.ma.getdata(a)
    out = [
        v.item() if isinstance(v, np.generic) and not isinstance(v, np.datetime64) else v
        for v in data
    ]
    if mask is not None:
        out = [None if m else v for v, m in zip(out, mask, strict=True)]
    return out


def load_log(data_dir: str | Path, name: str) -> ImportedLog:
    path = Path(data_dir) / "logs" / f"{name}.json"
    if not path.exists():
        raise NotFound(f"no imported log {name!r} (offerloop logs import FILE --name {name})")
    doc = json.loads(path.read_text())
    rows = doc["rows"]
    data = LoggedData(
        features=[r["features"] for r in rows],
        offers=[r["action"] for r in rows],
        rewards=np.array([r["reward"] for r in rows], dtype=np.float64),
        propensities=np.array([r["propensity"] for r in rows], dtype=np.float64),
        ts=np.array([r["ts"] for r in rows], dtype=np.float64),
    )
    specs = [{**s, "categories": s.get("categories", [])} for s in doc["schema"]]
    return ImportedLog(name, data, list(doc["actions"]), Encoder(specs), doc["source"])
