"""Running the CLI in tests: in-process (click's isolation of stdin, stdout, stderr and the
environment; the same ``main`` as the console script, so exit codes and one-line errors are
the real ones), and as a real process for the one smoke test that needs it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from offerloop.cli import _main

__all__ = ["Result", "run", "run_process"]


@dataclass(frozen=True)
class Result:
    """What a command did: its exit code and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str] | None) -> dict[str, str | None]:
    """The caller's environment without its OFFERLOOP_ settings, plus ``extra``."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("OFFERLOOP_")}
    return {**unset, **(extra or {}), "COLUMNS": "200"}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """``offerloop *args`` in this process, in ``cwd``, on a 200-column console."""
    runner = CliRunner()
    code = 0
    width = _main.out.width, _main.err.width
    _main.out.width = _main.err.width = 200
    try:
        with contextlib.chdir(cwd), runner.isolation(env=_env(env)) as (out, err, _):
            try:
                _main.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        _main.out.width, _main.err.width = width
    return Result(code, stdout, stderr)


def run_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m offerloop *args`` as a real process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OFFERLOOP_")}
    return subprocess.run(
        [sys.executable, "-m", "offerloop", *args],
        cwd=cwd,
        env={**base, **(env or {}), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,  # an upper bound for a loaded machine, not a speed
    )
