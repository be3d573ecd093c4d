"""The ``offerloop`` command line (Typer)."""

from offerloop.cli._main import app, main

__all__ = ["app", "main"]
