"""What the benchmark scripts share: each measured step runs in a fresh subprocess.

A fresh process per step makes its peak resident memory (ru_maxrss) its own. The worker
prints one JSON line last; a failed step stops the benchmark with the worker's stderr.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys


def run_worker(argv: list[str], name: str, args: dict) -> dict:
    """Run ``python *argv name json(args)`` and return the JSON of its last output line."""
    proc = subprocess.run(
        [sys.executable, *argv, name, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    """The median of one figure over repeated runs."""
    return statistics.median(r[key] for r in runs)
