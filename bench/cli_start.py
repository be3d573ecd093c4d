"""How long a command of the CLI takes to start, as whole processes, against peers in the same run.

Every CLI command pays for its imports before it does anything; ``offerloop --help`` is the
floor. Measured side by side, interleaved, ``--rounds`` times each (medians, min, max):

- ``offerloop --help`` and ``python -c "import offerloop"`` (the package's import alone);
- ``offerloop settings`` (loads the settings, imports nothing heavy);
- the interpreter's own floor, ``python -c pass``;
- peers where installed (the bench group has Feast): ``feast --help``.

Target (issue 16): ``offerloop --help`` ≤ 0.3 s. Results go to bench/results/cli_start.json.

    .venv/bin/python bench/cli_start.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
TARGET_SECONDS = 0.3


def _commands(data_dir: str) -> dict[str, list[str]]:
    py = sys.executable
    cmds = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import offerloop'": [py, "-c", "import offerloop"],
        "offerloop --help": [str(BIN / "offerloop"), "--help"],
        "offerloop settings": [str(BIN / "offerloop"), "settings", "--data-dir", data_dir],
    }
    feast = shutil.which("feast", path=str(BIN))
    if feast:
        cmds["feast --help (peer)"] = [feast, "--help"]
    return cmds


def _time(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        cmds = _commands(data_dir)
        for cmd in cmds.values():  # warm the page cache and the bytecode once
            _time(cmd)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.rounds):  # interleaved: a busy moment hits every command alike
            for name, cmd in cmds.items():
                times[name].append(_time(cmd))
    rows = {
        name: {
            "median_s": round(statistics.median(t), 4),
            "min_s": round(min(t), 4),
            "max_s": round(max(t), 4),
        }
        for name, t in times.items()
    }
    help_s = rows["offerloop --help"]["median_s"]
    out = {
        "command": "python bench/cli_start.py --rounds " + str(args.rounds),
        "rounds": args.rounds,
        "target_help_s": TARGET_SECONDS,
        "help_met": help_s <= TARGET_SECONDS,
        "results": rows,
    }
    if "feast --help (peer)" in rows:
        out["feast_over_offerloop_help"] = round(
            rows["feast --help (peer)"]["median_s"] / help_s, 2
        )
    print(f"{'command':34} {'median':>8} {'min':>8} {'max':>8}")
    for name, r in rows.items():
        print(f"{name:34} {r['median_s']:8.3f} {r['min_s']:8.3f} {r['max_s']:8.3f}")
    verdict = "met" if out["help_met"] else "NOT met"
    print(f"offerloop --help median {help_s:.3f} s; target <= {TARGET_SECONDS} s: {verdict}")
    path = HERE / "results" / "cli_start.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
