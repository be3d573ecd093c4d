"""LightGBM models compiled to native code for serving.

LightGBM's own predictor walks its trees through generic node arrays: for one decision (24
rows, 150 trees) that is ~0.2 ms, most of a decision's budget. Here a booster's text model
(the artifact, sha256-checked when loaded) is translated to C, one nested ``if`` per tree
with LightGBM's exact split semantics (missing values, default directions, thresholds as
exact hexadecimal literals, the same summation order and output transform), compiled with
the machine's C compiler and called through ctypes with one call per batch.

Nothing is trusted blindly: the compiled library must reproduce ``booster.predict`` to
1e-12 on a few hundred probe rows before it serves, and a model this translator does not
cover (categorical splits, linear trees, multiclass, other objectives) keeps LightGBM's
predictor. Only a library this process compiled is ever loaded: it is built in a private
temporary directory under ``cache_dir``, its sha256 checked against the bytes the compiler
wrote just before it is loaded, and the file removed once loaded; a file planted in the data
directory can never be run. Each model is compiled once per process (in the background, a
second or two); the same model again is the same library.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["CompiledTrees", "Unsupported", "compile_booster"]

Matrix = NDArray[np.float64]
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant: 1e-35f)


class Unsupported(ValueError):
    """This model needs LightGBM's own predictor."""


class CompiledTrees:
    """A compiled model: ``predict(x)`` for a C-contiguous float64 matrix of ``n_features``
    columns, one value per row (the booster's prediction)."""

    def __init__(self, path: Path, n_features: int, sha256: str) -> None:
        self.path = path
        self.n_features = n_features
        self.sha256 = sha256
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise RuntimeError(f"{path} is not the library this process compiled")
        lib = ctypes.CDLL(str(path))
        fn = lib.offerloop_predict
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
        self._fn: Callable[..., None] = fn
        self._lib = lib  # kept alive with the function

    def predict(self, x: Matrix) -> Matrix:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {x.shape}")
        out = np.empty(x.shape[0], dtype=np.float64)
        self._fn(x.ctypes.data, x.shape[0], out.ctypes.data)
        return out


def compile_booster(
    model_text: str,
    predict: Callable[[Matrix], Matrix],
    cache_dir: Path,
    compiler: str | None = None,
) -> CompiledTrees:
    """Compile a LightGBM text model (``booster.model_to_string()``) and check it against
    ``predict`` (the booster's own). Raises :class:`Unsupported` for models it does not
    cover and ``RuntimeError`` if no compiler works or the check fails."""
    n_features, source = _c_source(model_text)
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    key = hashlib.sha256(f"{cc}\x00{source}".encode()).hexdigest()[:32]
    with _LOCK:
        known = _BUILT.get(key)
    if known is not None:
        return known
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="build-") as tmp:  # mode 0700
        c_file = Path(tmp) / "trees.c"
        c_file.write_text(source)
        out = Path(tmp) / f"trees-{key}.so"
        done = subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(c_file), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"compiling the trees failed: {done.stderr[-500:]}")
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        compiled = CompiledTrees(out, n_features, digest)  # loaded; the file goes with tmp
    probe = _probe_rows(model_text, n_features)
    want = predict(probe)
    got = compiled.predict(probe)
    if not np.allclose(got, want, rtol=0.0, atol=1e-12):
        raise RuntimeError(
            f"compiled trees differ from LightGBM (max {np.max(np.abs(got - want)):.3g})"
        )
    with _LOCK:
        return _BUILT.setdefault(key, compiled)


_BUILT: dict[str, CompiledTrees] = {}  # by source hash: what this process compiled
_LOCK = threading.Lock()


# -- the translation ---------------------------------------------------------------------


def _header(text: str) -> dict[str, str]:
    head = text.split("\nTree=", 1)[0]
    return dict(line.split("=", 1) for line in head.splitlines() if "=" in line)


def _trees(text: str) -> list[dict[str, str]]:
    body = text.split("end of trees", 1)[0]
    out = []
    for block in body.split("\nTree=")[1:]:
        lines = block.splitlines()[1:]
        out.append(dict(x.split("=", 1) for x in lines if "=" in x))
    return out


def _transform(header: dict[str, str]) -> str:
    objective = header.get("objective", "").split()
    if not objective:
        raise Unsupported("the model names no objective")
    name, params = objective[0], dict(p.split(":", 1) for p in objective[1:] if ":" in p)
    if name in ("regression", "regression_l2", "l2", "mse", "mean_squared_error"):
        return "s"
    if name == "tweedie":  # log link: the raw score is the log of the prediction
        return "exp(s)"
    if name == "binary":
        sigmoid = float(params.get("sigmoid", "1"))
        return f"1.0 / (1.0 + exp(-({sigmoid.hex()}) * s))"
    raise Unsupported(f"objective {name!r} is not compiled")


def _c_source(text: str) -> tuple[int, str]:
    header = _header(text)
    if header.get("num_class", "1") != "1" or header.get("num_tree_per_iteration", "1") != "1":
        raise Unsupported("multiclass models are not compiled")
    if "average_output" in header:
        raise Unsupported("random-forest averaging is not compiled")
    n_features = int(header["max_feature_idx"]) + 1
    transform = _transform(header)
    trees = _trees(text)
    if not trees:
        raise Unsupported("the model has no trees")
    parts = ["#include <math.h>", f"#define Z {_ZERO.hex()}", ""]
    for i, t in enumerate(trees):
        parts.append(f"static double t{i}(const double *x) {{")
        parts.extend(_tree_body(t))
        parts.append("}")
    parts.append("void offerloop_predict(const double *x, long n, double *out) {")
    parts.append("  for (long r = 0; r < n; r++) {")
    # as LightGBM's predictor reads a dense row: values within Z of zero are zero
    parts.append(f"    double row[{n_features}];")
    parts.append(f"    for (int j = 0; j < {n_features}; j++) {{")
    parts.append(f"      double a = x[r * {n_features} + j];")
    parts.append("      row[j] = (fabs(a) <= Z) ? 0.0 : a;")
    parts.append("    }")
    parts.append("    double s = 0.0;")
    parts.extend(f"    s += t{i}(row);" for i in range(len(trees)))
    parts.append(f"    out[r] = {transform};")
    parts.append("  }")
    parts.append("}")
    return n_features, "\n".join(parts) + "\n"


def _floats(t: dict[str, str], key: str) -> list[float]:
    return [float(v) for v in t[key].split()] if t.get(key, "").strip() else []


def _ints(t: dict[str, str], key: str) -> list[int]:
    return [int(v) for v in t[key].split()] if t.get(key, "").strip() else []


def _lit(v: float) -> str:
    if not math.isfinite(v):
        return "(1.0/0.0)" if v > 0 else ("(-1.0/0.0)" if v < 0 else "(0.0/0.0)")
    return v.hex()


def _tree_body(t: dict[str, str]) -> list[str]:
    if t.get("is_linear", "0") != "0":
        raise Unsupported("linear trees are not compiled")
    leaves = _floats(t, "leaf_value")
    if int(t["num_leaves"]) == 1:
        return [f"  return {_lit(leaves[0])};"]
    feature = _ints(t, "split_feature")
    threshold = _floats(t, "threshold")
    dtype = _ints(t, "decision_type")
    left, right = _ints(t, "left_child"), _ints(t, "right_child")
    lines: list[str] = []

    def node(i: int, depth: int) -> None:
        pad = "  " * depth
        if i < 0:
            lines.append(f"{pad}return {_lit(leaves[~i])};")
            return
        if dtype[i] & 1:
            raise Unsupported("categorical splits are not compiled")
        default_left = "1" if dtype[i] & 2 else "0"
        missing = (dtype[i] >> 2) & 3
        f, thr = feature[i], _lit(threshold[i])
        if missing == 0:  # none: NaN counts as 0
            cond = f"((isnan(x[{f}]) ? 0.0 : x[{f}]) <= {thr})"
        elif missing == 1:  # zero (and NaN, as 0) go the default way
            v = f"(isnan(x[{f}]) ? 0.0 : x[{f}])"
            cond = f"((fabs({v}) <= Z) ? {default_left} : ({v} <= {thr}))"
        else:  # NaN goes the default way
            cond = f"(isnan(x[{f}]) ? {default_left} : (x[{f}] <= {thr}))"
        lines.append(f"{pad}if {cond} {{")
        node(left[i], depth + 1)
        lines.append(f"{pad}}} else {{")
        node(right[i], depth + 1)
        lines.append(f"{pad}}}")

    node(0, 1)
    return lines


def _probe_rows(text: str, n_features: int) -> Matrix:
    """Rows that cross every threshold of the model: each threshold itself, just below and
    above it, plus random values, zeros, values around LightGBM's zero threshold and NaNs."""
    rng = np.random.default_rng(0)
    thresholds: dict[int, list[float]] = {}
    for t in _trees(text):
        for f, thr in zip(_ints(t, "split_feature"), _floats(t, "threshold"), strict=False):
            if math.isfinite(thr):
                thresholds.setdefault(f, []).append(thr)
    rows = 256
    x = rng.normal(size=(rows, n_features)) * 3
    for f, values in thresholds.items():
        v = np.array(values)
        picks = np.concatenate([v, np.nextafter(v, -np.inf), np.nextafter(v, np.inf)])
        x[:, f] = rng.choice(picks, size=rows)
    x[rng.random(x.shape) < 0.05] = 0.0
    tiny = rng.random(x.shape) < 0.03  # within LightGBM's zero threshold, or just outside
    x[tiny] = rng.choice([5e-36, -5e-36, _ZERO, -_ZERO, 2 * _ZERO], size=int(tiny.sum()))
    x[rng.random(x.shape) < 0.05] = np.nan
    return x
