"""The API's score book at scale: start-up, event updates and reasons for N customers.

Replicates the benchmark home's latest vectors to N customers (as batch_score.py does)
and, in this process, times what `kizuna serve` does at start-up and afterwards:

* reading every customer's latest vector (DuckDB) and building the score book (the four
  models over everyone), with the process's peak memory;
* applying an event batch: rescoring 100 customers into the book (median of 5);
* a first request for a customer whose reasons are not filled in yet (SHAP on the spot)
  against a repeated one (kept JSON), medians over 1,000 customers;
* the background reasons pass over 20,000 customers, and so its time for all N.

The comparison in the same run is the book built the eager way, reasons for everyone
before ready, extrapolated from that pass: start-up = build + full reasons pass.

    .venv/bin/python benchmarks/score_book.py --customers 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from batch_score import replicate

SAMPLE = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("data/bench-serving/home"))
    parser.add_argument("--mlruns", type=Path, default=Path("data/bench-serving/mlruns"))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("data/bench-book"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    rows = replicate(args.home.resolve(), work / "home", args.customers)
    os.environ["KIZUNA_HOME"] = str(work / "home")
    os.environ["KIZUNA_MLRUNS"] = str(args.mlruns.resolve())

    from kizuna.serving.scoring import Champions, ScoreBook, latest_vectors
    from kizuna.settings import get_settings

    settings = get_settings()
    champions = Champions.load(settings)
    started = time.perf_counter()
    frame = latest_vectors(settings)
    read = time.perf_counter() - started
    started = time.perf_counter()
    book = ScoreBook(champions, frame, datetime.now(UTC))
    build = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{rows:,} customers: vectors read in {read:.1f} s, book built in {build:.1f} s")

    updates = []
    for k in range(5):
        batch = frame.iloc[k * 1_000 : k * 1_000 + 100].copy()
        started = time.perf_counter()
        book.update(batch, datetime.now(UTC))
        updates.append(time.perf_counter() - started)

    ids = frame["customer_id"].iloc[SAMPLE : SAMPLE + 1_000].tolist()
    first, again = [], []
    for customer in ids:
        started = time.perf_counter()
        book.score_json(customer)
        first.append(time.perf_counter() - started)
    for customer in ids:
        started = time.perf_counter()
        book.score_json(customer)
        again.append(time.perf_counter() - started)

    # The background pass over the first SAMPLE rows (fill_reasons stops at the end of
    # the book, so time a slice of it through a book of SAMPLE customers' rows).
    sample = ScoreBook(champions, frame.iloc[:SAMPLE], datetime.now(UTC))
    started = time.perf_counter()
    sample.fill_reasons()
    per_customer = (time.perf_counter() - started) / SAMPLE
    full_pass = per_customer * rows

    figures = {
        "customers": rows,
        "read_seconds": round(read, 1),
        "build_seconds": round(build, 1),
        "ready_seconds": round(read + build, 1),
        "eager_ready_seconds_extrapolated": round(read + build + full_pass, 1),
        "peak_memory_gb": round(peak_gb, 2),
        "update_100_customers_ms_median": round(1e3 * statistics.median(updates), 1),
        "first_request_ms_median": round(1e3 * statistics.median(first), 3),
        "repeated_request_ms_median": round(1e3 * statistics.median(again), 4),
        "reasons_ms_per_customer": round(1e3 * per_customer, 3),
        "reasons_full_pass_seconds_extrapolated": round(full_pass, 1),
    }
    print(
        f"ready after {read + build:.1f} s (vectors {read:.1f} s + book {build:.1f} s), peak "
        f"memory {peak_gb:.1f} GB; eager reasons before ready would make it "
        f"{read + build + full_pass:.0f} s ({(read + build + full_pass) / (read + build):.1f}x; "
        f"reasons {1e3 * per_customer:.2f} ms per customer over {SAMPLE:,}, extrapolated)"
    )
    print(
        f"event update of 100 customers: median {1e3 * statistics.median(updates):.0f} ms; "
        f"first request for a customer (reasons on the spot): median "
        f"{1e3 * statistics.median(first):.2f} ms; repeated: "
        f"{1e3 * statistics.median(again):.3f} ms"
    )
    print(
        "command: .venv/bin/python benchmarks/score_book.py "
        f"--home {args.home} --mlruns {args.mlruns} --customers {args.customers}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
