"""Repeat-purchase quality on CDNOW against BG/NBD and Pareto/NBD (Fader, Hardie & Lee 2005).

The CDNOW cohort (every customer whose first purchase fell in Q1 1997) is ingested with
the ``cdnow`` preset into a temporary ``KIZUNA_HOME``. Calibration is weeks 1-39
(1997-01-01 .. 1997-09-30), holdout weeks 40-78 (1997-10-01 .. 1998-06-30), as in the
paper. Purchases are distinct purchase days (lifetimes' convention; 1,882 in the sample's
holdout per ../shared/data/README.md).

* **BG/NBD** and **Pareto/NBD**: fitted on the calibration summary at the end of week 39.
* **Kizuna**: :class:`kizuna.training.counts.RepeatForecaster` trained at weekly cutoffs
  from week 13 to week 33, each labelled on (cutoff, end of week 39]; BG/NBD refitted at
  every cutoff on the data up to it (its expectation is the count model's offset: on a
  customer split inside the calibration period its validation Poisson loss, 0.550, beat a
  Pareto/NBD offset's, 0.563). Nothing from the holdout is read before scoring.

Three metrics on every customer, all scorers in the same run: ROC-AUC of "buys again in
the holdout", per-customer MAE of holdout purchase days, and the absolute % error of the
aggregate holdout forecast.

    .venv/bin/python benchmarks/quality_cdnow.py              # all 23,570 customers
    .venv/bin/python benchmarks/quality_cdnow.py --sample     # the 2,357 sample
    .venv/bin/python benchmarks/quality_cdnow.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from kizuna.features.compute import Tables
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from kizuna.training.btyd import BtydBaseline, rfm_summary
from kizuna.training.counts import RepeatForecaster, cutoff_frame, training_frame

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cdnow"
START = datetime(1997, 1, 1, tzinfo=UTC)
CALIBRATION_END = START + timedelta(weeks=39)  # 1997-10-01 00:00: sees weeks 1-39
HOLDOUT_END = START + timedelta(weeks=78) + timedelta(days=1)  # sees 1998-06-30
HOLDOUT_WEEKS = (HOLDOUT_END - CALIBRATION_END) / timedelta(weeks=1)
TRAINING_CUTOFFS = [START + timedelta(weeks=w) for w in range(13, 34)]
# The published anchor run alongside (README): BG/NBD on the sample.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def scores(
    actual: np.ndarray, p_buy: np.ndarray, expected: np.ndarray, once: np.ndarray
) -> dict[str, float]:
    """AUC of buying again (all customers, and one-time buyers only), MAE of purchase
    days, aggregate forecast and its % error."""
    return {
        "auc_buys_again": float(roc_auc_score(actual > 0, p_buy)),
        "auc_buys_again_one_time_buyers": float(roc_auc_score(actual[once] > 0, p_buy[once])),
        "mae_purchases": float(np.abs(actual - expected).mean()),
        "forecast_total": float(expected.sum()),
        "actual_total": float(actual.sum()),
        "aggregate_abs_pct_error": float(100 * abs(expected.sum() / actual.sum() - 1)),
    }


def run(sample: bool, workdir: Path) -> dict:
    """Ingest, fit every scorer, score the holdout; the result as a dict."""
    source = DATA / ("CDNOW_sample.txt" if sample else "CDNOW_master.txt")
    settings = Settings(home=workdir / "home")
    started = time.perf_counter()
    ingest([source], settings, preset="cdnow", now=datetime(2026, 1, 1, tzinfo=UTC))
    con, tables = connect(settings), Tables.from_lake(Lake(settings))

    # Everything below up to scoring reads data at or before CALIBRATION_END only.
    frame = training_frame(con, tables, TRAINING_CUTOFFS, CALIBRATION_END)
    forecaster = RepeatForecaster(n_jobs=2).fit(frame)
    target = cutoff_frame(con, tables, CALIBRATION_END, HOLDOUT_END)
    kizuna = forecaster.predict(target)
    summary = rfm_summary(con, tables, CALIBRATION_END).loc[target["customer_id"]]
    baselines = {m: BtydBaseline(m, fit_spend=False).fit(summary) for m in ("bgnbd", "pareto_nbd")}

    # Scoring: the only place the holdout's purchases are read (cutoff_frame's labels).
    actual = target["purchases"].to_numpy(dtype=float)
    once = summary["frequency"].to_numpy() == 0
    rows = {
        "kizuna": scores(
            actual, kizuna["p_buy"].to_numpy(), kizuna["expected_purchases"].to_numpy(), once
        )
    }
    for name, model in baselines.items():
        rows[name] = scores(
            actual,
            model.p_buy_within(summary, HOLDOUT_WEEKS),
            model.expected_purchases(summary, HOLDOUT_WEEKS),
            once,
        )
    return {
        "data": source.name,
        "customers": len(target),
        "training_rows": len(frame),
        "training_cutoffs": len(TRAINING_CUTOFFS),
        "count_rounds": forecaster.counts_.best_iteration_,
        "churn_rounds": forecaster.churn_.best_iteration_,
        "bgnbd_params": baselines["bgnbd"].params_,
        "pareto_nbd_params": baselines["pareto_nbd"].params_,
        "scores": rows,
        "seconds": time.perf_counter() - started,
    }


def print_table(result: dict, command: str) -> None:
    """The scorers side by side, then how to reproduce them."""
    print(
        f"CDNOW {result['data']}: {result['customers']:,} customers, calibration weeks 1-39, "
        f"holdout weeks 40-78 ({result['seconds']:.0f} s)"
    )
    print(
        f"Kizuna trained on {result['training_rows']:,} rows from "
        f"{result['training_cutoffs']} weekly cutoffs (weeks 13-33)"
    )
    params = ", ".join(f"{k}={v:.3f}" for k, v in result["bgnbd_params"].items())
    print(f"BG/NBD params: {params} (published, sample: r=0.243 alpha=4.414 a=0.793 b=2.426)")
    print()
    header = f"{'scorer':<12}{'AUC buys again':>16}{'(one-time)':>12}{'MAE purchases':>15}"
    print(header + f"{'forecast':>10}{'actual':>8}{'|% error|':>11}")
    for name, row in result["scores"].items():
        print(
            f"{name:<12}{row['auc_buys_again']:>16.4f}"
            f"{row['auc_buys_again_one_time_buyers']:>12.4f}{row['mae_purchases']:>15.4f}"
            f"{row['forecast_total']:>10.0f}{row['actual_total']:>8.0f}"
            f"{row['aggregate_abs_pct_error']:>10.1f}%"
        )
    print()
    print(f"reproduce: {command}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", action="store_true", help="the 2,357-customer sample")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kizuna-cdnow-") as tmp:
        result = run(args.sample, Path(tmp))
    command = " ".join([".venv/bin/python", "benchmarks/quality_cdnow.py", *sys.argv[1:]])
    print_table(result, command)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
