"""Time and peak memory of simulating and ingesting retailers, and of a 10M-row order file.

Each step runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own.
Beside each ingest, the same run measures a baseline: copying the same files with plain
pandas (read whole, write Parquet) with no validation, deduplication or atomic commit, so
the ratio shows what ingest's checks cost. Medians over --repeat runs.

    .venv/bin/python benchmarks/simulate_ingest.py                      # 50k and 1M customers
    .venv/bin/python benchmarks/simulate_ingest.py --customers 50000 --repeat 3
    .venv/bin/python benchmarks/simulate_ingest.py --order-rows 10000000 --customers 0
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

from steps import median_of, run_worker

WORKER = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    step, args = sys.argv[1], json.loads(sys.argv[2])
    started = time.perf_counter()
    out = {}
    if step == "simulate":
        from kizuna.features.simulate import simulate
        summary = simulate(Path(args["out"]), customers=args["customers"], days=args["days"],
                           seed=args["seed"])
        out["rows"] = summary.rows
    elif step == "ingest":
        from kizuna.features.ingest import ingest
        from kizuna.settings import Settings
        report = ingest([Path(p) for p in args["paths"]], Settings(home=Path(args["home"])))
        out["rows"] = report.rows_read
        out["accepted"] = {k: r.accepted for k, r in report.kinds.items()}
    elif step == "pandas-copy":
        import pandas as pd
        target = Path(args["home"])
        target.mkdir(parents=True, exist_ok=True)
        rows = 0
        for p in args["paths"]:
            p = Path(p)
            frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
            rows += len(frame)
            frame.to_parquet(target / (p.name.split(".")[0] + ".parquet"))
            del frame
        out["rows"] = rows
    elif step == "orders-csv":
        import numpy as np
        n, chunk = args["rows"], 1_000_000
        rng = np.random.default_rng(0)
        with open(args["out"], "w") as fh:
            fh.write("order_id,customer_id,ordered_at,amount,discount_amount,channel\\n")
            for start in range(0, n, chunk):
                k = min(chunk, n - start)
                ids = np.arange(start, start + k)
                cust = rng.integers(0, n // 10, k)
                secs = rng.integers(0, 700 * 86400, k) + 1672531200
                ts = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s")
                amount = np.round(rng.gamma(2.0, 30.0, k), 2)
                lines = [f"o{i},c{c},{t}Z,{a},0,web" for i, c, t, a in zip(ids, cust, ts, amount)]
                fh.write("\\n".join(lines) + "\\n")
        out["rows"] = n
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    """
)


def step(name: str, **args) -> dict:
    return run_worker(["-c", WORKER], name, args)


def contract_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.parquet"))


def bench_customers(n: int, days: int, repeat: int, work: Path) -> list[str]:
    rows_out = []
    sims, ingests, copies = [], [], []
    for i in range(repeat):
        out = work / f"sim-{n}-{i}"
        sims.append(step("simulate", out=str(out), customers=n, days=days, seed=7))
        files = contract_files(out)
        ingests.append(step("ingest", paths=files, home=str(work / f"home-{n}-{i}")))
        copies.append(step("pandas-copy", paths=files, home=str(work / f"copy-{n}-{i}")))
        shutil.rmtree(work / f"home-{n}-{i}", ignore_errors=True)
        shutil.rmtree(work / f"copy-{n}-{i}", ignore_errors=True)
        if i < repeat - 1:
            shutil.rmtree(out, ignore_errors=True)
    rows = sims[-1]["rows"]
    total_rows = ingests[-1]["rows"]
    sim_s, ing_s, copy_s = (median_of(x, "seconds") for x in (sims, ingests, copies))
    rows_out.append(
        f"| simulate {n:,} customers x {days} d | {sim_s:.1f} s | "
        f"{median_of(sims, 'peak_rss_mb'):,.0f} MB | "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items())
        + " |"
    )
    rows_out.append(
        f"| ingest it ({total_rows:,} rows) | {ing_s:.1f} s ({total_rows / ing_s:,.0f} rows/s) | "
        f"{median_of(ingests, 'peak_rss_mb'):,.0f} MB | pandas copy (no checks) "
        f"{copy_s:.1f} s, {median_of(copies, 'peak_rss_mb'):,.0f} MB; ingest / copy = "
        f"{ing_s / copy_s:.2f}x time |"
    )
    shutil.rmtree(work / f"sim-{n}-{repeat - 1}", ignore_errors=True)
    return rows_out


def bench_orders(n: int, repeat: int, work: Path) -> list[str]:
    csv = work / f"orders-{n}.csv"
    step("orders-csv", out=str(csv), rows=n)
    ingests, copies = [], []
    for i in range(repeat):
        ingests.append(step("ingest", paths=[str(csv)], home=str(work / f"orders-home-{i}")))
        shutil.rmtree(work / f"orders-home-{i}", ignore_errors=True)
    copies.append(step("pandas-copy", paths=[str(csv)], home=str(work / "orders-copy")))
    ing_s, copy_s = median_of(ingests, "seconds"), median_of(copies, "seconds")
    size_mb = csv.stat().st_size / 1e6
    csv.unlink()
    return [
        f"| ingest {n:,} order rows (CSV, {size_mb:,.0f} MB) | {ing_s:.1f} s "
        f"({n / ing_s:,.0f} rows/s) | {median_of(ingests, 'peak_rss_mb'):,.0f} MB | "
        f"pandas read_csv whole + to_parquet {copy_s:.1f} s, "
        f"{median_of(copies, 'peak_rss_mb'):,.0f} MB |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers", default="50000,1000000", help="comma-separated sizes; 0 skips"
    )
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--order-rows", type=int, default=10_000_000, help="0 skips")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kizuna-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    table = ["| step | time (median) | peak memory | notes |", "|---|---|---|---|"]
    for n in (int(x) for x in args.customers.split(",")):
        if n > 0:
            table += bench_customers(n, args.days, args.repeat, work)
            print("\n".join(table[-2:]), flush=True)
    if args.order_rows:
        table += bench_orders(args.order_rows, args.repeat, work)
        print(table[-1], flush=True)
    print()
    print("\n".join(table))
    print(f"\ncommand: .venv/bin/python benchmarks/simulate_ingest.py {' '.join(sys.argv[1:])}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
