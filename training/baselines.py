"""The BTYD baselines in every evaluation: BG/NBD and Gamma-Gamma beside each model.

For the churn, repurchase and value models the trainer adds these rows to the evaluation
table, fitted on the same data the model saw (orders up to the test cutoff) and scored on
the same held-out rows:

* ``bgnbd``: churn risk 1 - P(a purchase within H days); P(purchase within 7..90 days);
  the expected days to the next purchase from that curve; value as BG/NBD conditional
  expected purchases times the Gamma-Gamma expected spend.
* ``bgnbd_p_alive``: churn risk 1 - P(alive), the textbook reading. It gives every
  one-time buyer P(alive) = 1, so it ranks those churners backwards.
"""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pandas as pd

from kizuna.features.compute import Tables
from kizuna.training.btyd import BtydBaseline, BtydError, rfm_summary
from kizuna.training.evaluate import classification_report, value_report
from kizuna.training.repurchase import HORIZONS, MAX_DAYS, score_outputs

log = logging.getLogger(__name__)

# Days at which the BG/NBD purchase curve is read to integrate the expected waiting time.
_CURVE_DAYS = (1, 3, 7, 14, 21, 30, 45, 60, 90, 120, 180, 270, 365, 540, MAX_DAYS)


def _fitted(con, tables: Tables, cutoff, fit_spend: bool) -> tuple[BtydBaseline, pd.DataFrame]:
    summary = rfm_summary(con, tables, cutoff.to_pydatetime(), period_days=1)
    return BtydBaseline("bgnbd", penalizer=0.001, fit_spend=fit_spend).fit(summary), summary


def _expected_days(baseline: BtydBaseline, summary: pd.DataFrame) -> np.ndarray:
    """E[min(T, MAX_DAYS)] from P(purchase within t) read on a grid (trapezoid rule)."""
    days = np.asarray((0, *_CURVE_DAYS), dtype=float)
    survival = np.column_stack(
        [np.ones(len(summary))] + [1 - baseline.p_buy_within(summary, t) for t in _CURVE_DAYS]
    )
    return np.trapezoid(survival, days, axis=1)


def btyd_rows(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    name: str,
    test: pd.DataFrame,
    label_days: int,
) -> pd.DataFrame:
    """Evaluation rows of the BTYD baselines for model ``name`` on ``test``.

    ``test`` holds one cutoff (its ``event_timestamp``); ``tables`` must hold nothing after
    the end of the training data. Returns an empty table for the offer model, or when
    BG/NBD cannot be fitted (the reason is logged).
    """
    if name not in ("churn", "repurchase", "value") or test.empty:
        return pd.DataFrame()
    cutoff = pd.Timestamp(test["event_timestamp"].max())
    try:
        baseline, summary = _fitted(con, tables, cutoff, fit_spend=name == "value")
    except BtydError as exc:
        log.warning("BG/NBD baseline skipped at %s: %s", cutoff, exc)
        return pd.DataFrame()
    summary = summary.reindex(test["customer_id"].astype(str))
    summary = summary.fillna({"frequency": 0, "recency": 0, "T": 0, "monetary_value": 0})
    rows: dict[str, dict[str, float]] = {}
    if name == "churn":
        known = test["churned"].notna().to_numpy()
        y = test["churned"].to_numpy()[known].astype(int)
        churn = 1 - baseline.p_buy_within(summary, label_days)
        rows["bgnbd"] = classification_report(y, churn[known])
        rows["bgnbd_p_alive"] = classification_report(y, 1 - baseline.p_alive(summary)[known])
    elif name == "repurchase":
        outputs = {f"p_buy_{h}d": baseline.p_buy_within(summary, h) for h in HORIZONS}
        outputs["expected_days_to_next_purchase"] = _expected_days(baseline, summary)
        rows["bgnbd"] = score_outputs(test, pd.DataFrame(outputs, index=test.index))
    else:
        known = test["future_value"].notna().to_numpy()
        actual = test["future_value"].to_numpy(dtype=float)[known]
        predicted = baseline.expected_value(summary, label_days)[known]
        rows["bgnbd_gamma_gamma"] = value_report(actual, np.nan_to_num(predicted))
    return pd.DataFrame.from_dict(rows, orient="index")
