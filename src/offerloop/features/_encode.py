"""How a model sees a feature row: numbers (optionally log1p, scaled) and one-hot categories.

An :class:`Encoder` is plain data, stored inside each model artifact, so a model keeps
encoding rows the way it was trained even after the feature definitions change. It also
knows which encoded columns are a player's history of one bundle, message or offer
(:class:`~offerloop.features.OfferHistory`), so a model can read "the history of the offer
it is scoring" as one column shared by every offer (:meth:`Encoder.offer_columns`).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from offerloop.features._defs import Feature, FeatureSet, OfferHistory

__all__ = ["Encoder"]


class Encoder:
    """Turns feature rows into model columns; plain data (:meth:`spec`) stored in each model
    artifact, so a model encodes rows as it was trained. ``names``: the encoded columns."""

    def __init__(self, spec: Sequence[Mapping[str, Any]]) -> None:
        self._features = [
            Feature(
                name=str(s["name"]),
                type=str(s["type"]),
                default=s["default"],
                categories=tuple(s.get("categories", ())),
                transform=str(s.get("transform", "identity")),
                scale=float(s.get("scale", 1.0)),
            )
            for s in spec
        ]
        self.names = [n for f in self._features for n in f.encoded_names()]
        # (column, by, key, group) of every offer-history feature
        self._offer: list[tuple[int, str, str, str]] = []
        j = 0
        for s, f in zip(spec, self._features, strict=True):
            if "offer_by" in s and f.type != "category":
                self._offer.append((j, str(s["offer_by"]), str(s["offer_key"]), str(s["group"])))
            j += len(f.encoded_names())
        self._extra = [
            {k: s[k] for k in ("offer_by", "offer_key", "group") if k in s} for s in spec
        ]
        self._key = repr(self.spec())

    @classmethod
    def of(cls, features: FeatureSet) -> Encoder:
        """The encoder of a feature set's current definitions."""
        return cls([_spec(f) for f in features])

    def spec(self) -> list[dict[str, Any]]:
        """The encoder as JSON-able data: ``Encoder(enc.spec())`` encodes the same way."""
        return [_spec(f) | x for f, x in zip(self._features, self._extra, strict=True)]

    @property
    def offer_groups(self) -> list[str]:
        """The offer-history groups (``bundle_seen_30d``, ...), in a fixed order."""
        return sorted({g for *_, g in self._offer})

    def offer_columns(self, offers: Sequence[Mapping[str, str]]) -> NDArray[np.int64]:
        """For every offer (its ``bundle``, ``message`` and ``offer`` id) and every group of
        :attr:`offer_groups`: the encoded column holding the player's history of that offer's
        key, or -1 when the features do not count its key. Shape (offers, groups)."""
        groups = self.offer_groups
        where = {(key, g): j for j, _, key, g in self._offer}
        by = {g: b for _, b, _, g in self._offer}  # a group counts one kind of key
        out = np.full((len(offers), len(groups)), -1, dtype=np.int64)
        for i, o in enumerate(offers):
            for gi, g in enumerate(groups):
                out[i, gi] = where.get((o.get(by[g], ""), g), -1)
        return out

    @property
    def feature_names(self) -> list[str]:
        """The features it reads, in order (``names`` are the encoded columns)."""
        return [f.name for f in self._features]

    def encode(self, row: Mapping[str, object]) -> list[float]:
        """One row's encoded columns, in the order of ``names`` (a missing feature: its default)."""
        out: list[float] = []
        for f in self._features:
            f.encode_into(row.get(f.name, f.default), out)
        return out

    def matrix(self, rows: Sequence[Mapping[str, object]]) -> NDArray[np.float64]:
        """Encode many rows at once, a column at a time (same values as :meth:`encode`).

        Batches are memoised by identity: evaluating several policies and a judge on the same
        logged rows (an immutable sequence) encodes them once.
        """
        if len(rows) <= 8:  # a decision's row: per-row is faster than numpy per column
            return np.array([self.encode(r) for r in rows], dtype=np.float64).reshape(
                len(rows), len(self.names)
            )
        with _MEMO_LOCK:
            for cached_rows, key, cached in _MEMO:
                if cached_rows is rows and key == self._key and len(cached) == len(rows):
                    return cached
        out = self._matrix(rows)
        out.flags.writeable = False
        with _MEMO_LOCK:
            _MEMO.appendleft((rows, self._key, out))
        return out

    def _matrix(self, rows: Sequence[Mapping[str, object]]) -> NDArray[np.float64]:
        out = np.zeros((len(rows), len(self.names)), dtype=np.float64)
        j = 0
        for f in self._features:
            name, default = f.name, f.default
            vals = [r.get(name, default) for r in rows]
            if f.type == "category":
                codes = np.fromiter(vals, dtype=object, count=len(vals))
                for c in f.categories:
                    out[:, j] = codes == c
                    j += 1
                continue
            x = _numbers(vals)
            if f.transform == "log1p":
                x = np.log1p(np.maximum(x, 0.0))
            out[:, j] = x / f.scale
            j += 1
        return out


# the last few encoded batches: (rows, encoder spec, matrix); strong refs keep ids unique
_MEMO: deque[tuple[Sequence[Mapping[str, object]], str, NDArray[np.float64]]] = deque(maxlen=4)
_MEMO_LOCK = threading.Lock()


_PLAIN = frozenset({int, float})


def _numbers(vals: list[object]) -> NDArray[np.float64]:
    """``[_number(v) for v in vals]`` as an array: at C speed when every value is a plain
    int or float (the usual case), value by value otherwise."""
    if {type(v) for v in vals} <= _PLAIN:
        try:
            x = np.array(vals, dtype=np.float64)
        except OverflowError:  # an int too large for a float: _number raises the same way
            pass
        else:
            x[~np.isfinite(x)] = 0.0
            return x
    return np.array([_number(v) for v in vals], dtype=np.float64)


def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0.0
    x = float(v)
    return x if math.isfinite(x) else 0.0


def _spec(f: Feature) -> dict[str, Any]:
    d = asdict(f)
    out = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in d.items()
        if k in ("name", "type", "default", "categories", "transform", "scale")
    }
    if isinstance(f, OfferHistory):
        out |= {"offer_by": f.by, "offer_key": f.key, "group": f.group}
    return out
