"""Repeat-purchase and 3-month value quality on Online Retail II against BG/NBD + Gamma-Gamma.

The 2009-12 .. 2010-12 release in ../shared/data/online-retail-ii/ is ingested with the
``online-retail`` preset into a temporary ``KIZUNA_HOME`` (invoice lines without a
customer are quarantined; cancellations become returns). The forecast cutoff is
2010-09-09 00:00 UTC; the holdout is the three months after it (to 2010-12-09, where the
data ends). Purchases are distinct purchase days (lifetimes' convention), returns excluded;
value is the spend of those purchases in the holdout.

* **BG/NBD** (+ **Gamma-Gamma** for value): fitted on the summary at the cutoff. The data
  shows almost no drop-out (BG/NBD's a is near 0); at some training cutoffs its fit does
  not converge (with or without a penalizer) and those cutoffs are skipped.
* **Kizuna**: :class:`kizuna.training.counts.RepeatForecaster` trained at weekly cutoffs
  from 2010-03-04 to 2010-08-05, each labelled on (cutoff, 2010-09-09]; its value is its
  expected purchases x Gamma-Gamma's expected spend per purchase day.

    .venv/bin/python benchmarks/quality_online_retail.py
    .venv/bin/python benchmarks/quality_online_retail.py --json out.json
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
import pandas as pd
from sklearn.metrics import roc_auc_score

from kizuna.features.compute import Tables
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from kizuna.training.btyd import BtydBaseline, rfm_summary
from kizuna.training.counts import RepeatForecaster, cutoff_frame, training_frame
from kizuna.training.evaluate import value_report

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "online-retail-ii"
CUTOFF = datetime(2010, 9, 9, tzinfo=UTC)
HOLDOUT_END = datetime(2010, 12, 9, 23, 59, 59, tzinfo=UTC)
HOLDOUT_WEEKS = (datetime(2010, 12, 9, tzinfo=UTC) - CUTOFF) / timedelta(weeks=1)
TRAINING_CUTOFFS = [datetime(2010, 3, 4, tzinfo=UTC) + timedelta(weeks=w) for w in range(23)]


def holdout_spend(con, tables: Tables, customers: pd.Series) -> np.ndarray:
    """Spend on purchases (returns excluded) in (CUTOFF, HOLDOUT_END] per customer."""
    spend = (
        con.execute(
            f"""SELECT customer_id, sum(amount) AS spend FROM {tables.orders}
                WHERE NOT coalesce(is_return, false)
                  AND ordered_at > $start AND ordered_at <= $end GROUP BY customer_id""",
            {"start": CUTOFF, "end": HOLDOUT_END},
        )
        .df()
        .set_index("customer_id")["spend"]
    )
    return spend.reindex(customers).fillna(0.0).to_numpy()


def count_scores(actual: np.ndarray, p_buy: np.ndarray, expected: np.ndarray) -> dict:
    """AUC of buying again, MAE of purchase days, aggregate forecast and its % error."""
    return {
        "auc_buys_again": float(roc_auc_score(actual > 0, p_buy)),
        "mae_purchases": float(np.abs(actual - expected).mean()),
        "forecast_total": float(expected.sum()),
        "actual_total": float(actual.sum()),
        "aggregate_abs_pct_error": float(100 * abs(expected.sum() / actual.sum() - 1)),
    }


def run(workdir: Path) -> dict:
    """Ingest, fit every scorer, score the holdout; the result as a dict."""
    settings = Settings(home=workdir / "home")
    started = time.perf_counter()
    files = sorted(DATA.glob("online_retail*.csv*"))
    ingest(files, settings, preset="online-retail", now=datetime(2026, 1, 1, tzinfo=UTC))
    con, tables = connect(settings), Tables.from_lake(Lake(settings))

    # Everything below up to scoring reads data at or before CUTOFF only.
    frame = training_frame(con, tables, TRAINING_CUTOFFS, CUTOFF, skip_unfitted=True)
    forecaster = RepeatForecaster(n_jobs=2).fit(frame)
    target = cutoff_frame(con, tables, CUTOFF, HOLDOUT_END)
    kizuna = forecaster.predict(target)
    summary = rfm_summary(con, tables, CUTOFF).loc[target["customer_id"]]
    bgnbd = BtydBaseline("bgnbd").fit(summary)
    spend_per_day = bgnbd.expected_spend(summary)

    # Scoring: the only place the holdout is read.
    actual = target["purchases"].to_numpy(dtype=float)
    value = holdout_spend(con, tables, target["customer_id"])
    kizuna_expected = kizuna["expected_purchases"].to_numpy()
    counts = {
        "kizuna": count_scores(actual, kizuna["p_buy"].to_numpy(), kizuna_expected),
        "bgnbd": count_scores(
            actual,
            bgnbd.p_buy_within(summary, HOLDOUT_WEEKS),
            bgnbd.expected_purchases(summary, HOLDOUT_WEEKS),
        ),
    }
    values = {
        "kizuna": value_report(value, kizuna_expected * spend_per_day),
        "gamma_gamma_bgnbd": value_report(value, bgnbd.expected_value(summary, HOLDOUT_WEEKS)),
    }
    return {
        "data": [f.name for f in files],
        "customers": len(target),
        "training_rows": len(frame),
        "training_cutoffs": int(frame["event_timestamp"].nunique()),
        "bgnbd_params": bgnbd.params_,
        "gamma_gamma_params": bgnbd.spend_params_,
        "holdout_revenue": float(value.sum()),
        "counts": counts,
        "value": values,
        "seconds": time.perf_counter() - started,
    }


def print_table(result: dict, command: str) -> None:
    """The scorers side by side, then how to reproduce them."""
    print(
        f"Online Retail II ({', '.join(result['data'])}): {result['customers']:,} customers "
        f"who bought by 2010-09-09, holdout to 2010-12-09 ({result['seconds']:.0f} s)"
    )
    print(
        f"Kizuna trained on {result['training_rows']:,} rows from "
        f"{result['training_cutoffs']} of {len(TRAINING_CUTOFFS)} weekly cutoffs "
        "(2010-03-04 .. 2010-08-05; the rest: BG/NBD did not converge)"
    )
    print()
    print(f"{'scorer':<20}{'AUC buys again':>16}{'MAE purchases':>15}{'forecast':>10}", end="")
    print(f"{'actual':>8}{'|% error|':>11}")
    for name, row in result["counts"].items():
        print(
            f"{name:<20}{row['auc_buys_again']:>16.4f}{row['mae_purchases']:>15.4f}"
            f"{row['forecast_total']:>10.0f}{row['actual_total']:>8.0f}"
            f"{row['aggregate_abs_pct_error']:>10.1f}%"
        )
    print()
    print(f"3-month value (holdout revenue {result['holdout_revenue']:,.0f}):")
    print(f"{'scorer':<20}{'Spearman':>10}{'MAE':>10}{'top-20% revenue':>17}{'Gini':>8}")
    for name, row in result["value"].items():
        print(
            f"{name:<20}{row['spearman']:>10.4f}{row['mae']:>10.1f}"
            f"{row['revenue_top20']:>17.3f}{row['gini']:>8.3f}"
        )
    print()
    print(f"reproduce: {command}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kizuna-retail-") as tmp:
        result = run(Path(tmp))
    command = " ".join([".venv/bin/python", "benchmarks/quality_online_retail.py", *sys.argv[1:]])
    print_table(result, command)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
