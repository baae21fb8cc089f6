"""Online Retail II through the product's path: cutoff 2010-09-09, a 92-day horizon.

Runs ``kizuna ingest --preset online-retail`` on the 2009-12 .. 2010-12 release and
``kizuna backtest --cutoff 2010-09-09 --horizon 92d`` (the data end on 2010-12-09, so the
outcome window holds 91 days; the backtest says so) in a temporary home, prints the
backtest's tables and checks each goal against BG/NBD, Pareto/NBD and Gamma-Gamma from
the same run (benchmarks/quality.py).

    .venv/bin/python benchmarks/quality_online_retail.py
    .venv/bin/python benchmarks/quality_online_retail.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import SHARED, report

FILE = SHARED / "online-retail-ii" / "online_retail_II_2009-12_2010-12.csv.gz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizon", default="92d", help="the backtest horizon (default 92d)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = report("Online Retail II", [FILE], "online-retail", "2010-09-09", args.horizon)
    command = ".venv/bin/python benchmarks/quality_online_retail.py " + " ".join(sys.argv[1:])
    print(f"\nreproduce: {command}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
