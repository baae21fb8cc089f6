"""CDNOW through the product's path: calibration weeks 1-39, holdout weeks 40-78.

Runs ``kizuna ingest --preset cdnow`` and ``kizuna backtest --cutoff 1997-10-01 --horizon
39w`` (the published split of Fader, Hardie & Lee 2005; the holdout ends with the data on
1998-06-30) in a temporary home, prints the backtest's tables and checks each goal against
BG/NBD, Pareto/NBD and Gamma-Gamma from the same run (benchmarks/quality.py).

    .venv/bin/python benchmarks/quality_cdnow.py              # all 23,570 customers
    .venv/bin/python benchmarks/quality_cdnow.py --sample     # the 2,357 sample
    .venv/bin/python benchmarks/quality_cdnow.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import SHARED, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", action="store_true", help="the 2,357-customer sample")
    parser.add_argument("--horizon", default="39w", help="the backtest horizon (default 39w)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    name = "CDNOW_sample.txt" if args.sample else "CDNOW_master.txt"
    result = report(name, [SHARED / "cdnow" / name], "cdnow", "1997-10-01", args.horizon)
    print(f"\nreproduce: .venv/bin/python benchmarks/quality_cdnow.py {' '.join(sys.argv[1:])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
