"""Batch scoring at scale: `kizuna score` over N customers' feature vectors.

Builds a home whose latest snapshot holds N customers by replicating the latest vectors of
an existing home (with new customer ids), beside that home's lake and MLflow store, then
times `kizuna score --out` on it in a fresh process. The vectors repeat, the work per
customer does not: every row goes through all four models and the offer valuation.

    .venv/bin/python benchmarks/batch_score.py --home data/bench-serving/home \
        --mlruns data/bench-serving/mlruns --customers 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from kizuna.features.catalog import VIEWS

GOAL_SECONDS = 120.0


def replicate(source: Path, target: Path, customers: int) -> int:
    """Write ``target``'s snapshot files: ``customers`` rows per view at the latest cutoff."""
    snapshots = target / "features" / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for view in VIEWS:
        path = source / "features" / "snapshots" / f"{view}.parquet"
        con.execute(
            f"""COPY (
                WITH latest AS (
                    SELECT * FROM read_parquet('{path}')
                    WHERE event_timestamp = (SELECT max(event_timestamp)
                                             FROM read_parquet('{path}'))),
                numbered AS (SELECT *, row_number() OVER (ORDER BY customer_id) - 1 AS k,
                                    count(*) OVER () AS n FROM latest)
                SELECT * EXCLUDE (customer_id, k, n),
                       printf('R%08d', k + n * copy) AS customer_id
                FROM numbered, range(0, ceil({customers} / n)::BIGINT) AS r(copy)
                WHERE k + n * copy < {customers}
            ) TO '{snapshots / f"{view}.parquet"}' (FORMAT parquet)"""
        )
    shutil.copytree(source / "lake", target / "lake", dirs_exist_ok=True)
    (rows,) = con.execute(
        f"SELECT count(*) FROM read_parquet('{snapshots / 'customer_purchases.parquet'}')"
    ).fetchone()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("data/bench-serving/home"))
    parser.add_argument("--mlruns", type=Path, default=Path("data/bench-serving/mlruns"))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("data/bench-batch"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    rows = replicate(args.home.resolve(), work / "home", args.customers)
    print(f"replicated {rows:,} customers' vectors in {time.perf_counter() - started:.1f} s")
    env = {
        **os.environ,
        "KIZUNA_HOME": str(work / "home"),
        "KIZUNA_MLRUNS": str(args.mlruns.resolve()),
    }
    out = work / "scores.parquet"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", "from kizuna.cli import app; app()", "score", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"kizuna score failed:\n{result.stderr}")
    own = re.search(r"in ([\d.]+) s", result.stdout)
    command_seconds = float(own.group(1)) if own else float("nan")
    figures = {
        "customers": rows,
        "wall_seconds": round(wall, 1),
        "command_seconds": command_seconds,
        "customers_per_second": round(rows / wall),
        "goal_seconds": GOAL_SECONDS,
        # The goal is about a million customers; a smaller run says nothing about it.
        "goal_met": (wall < GOAL_SECONDS) if rows >= 1_000_000 else None,
    }
    verdict = {True: "met", False: "not met", None: "not judged below 1,000,000 customers"}
    print(
        f"kizuna score: {rows:,} customers in {wall:.1f} s wall ({rows / wall:,.0f}/s), "
        f"{command_seconds:.1f} s by its own clock; goal (1,000,000 in < "
        f"{GOAL_SECONDS:.0f} s): {verdict[figures['goal_met']]}"
    )
    print(
        "command: .venv/bin/python benchmarks/batch_score.py "
        f"--home {args.home} --mlruns {args.mlruns} --customers {args.customers}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
