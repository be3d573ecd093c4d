"""The backend conformance suite (offerloop.testing) over every registered backend: a backend
added to ``offerloop.backends.BACKENDS`` runs it, or this module fails until it says how to
open one for a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offerloop import load_settings
from offerloop.backends import BACKENDS, Backend, open_backend
from offerloop.testing import BackendConformance
from tests.conftest import PG_URL, unique_name

# how a test opens each registered backend on a store of its own (settings overrides)
_OPEN: dict[str, Callable[[Path], dict[str, Any]]] = {
    "sqlite": lambda tmp: {"data_dir": str(tmp)},
    "postgres": lambda tmp: {"database_url": PG_URL, "database_schema": unique_name("t")},
}


def test_every_registered_backend_is_in_the_suite() -> None:
    assert set(BACKENDS) == set(_OPEN)


class TestEveryBackend(BackendConformance):
    @pytest.fixture(params=sorted(BACKENDS))
    def backend(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
        name: str = request.param
        if name not in _OPEN:
            pytest.fail(f"backend {name!r} is registered but the suite cannot open it: add it")
        b = open_backend(load_settings(env={}, **_OPEN[name](tmp_path)), name)
        yield b
        drop = getattr(b, "drop_schema", None)
        if drop is not None:
            drop()
        b.close()
