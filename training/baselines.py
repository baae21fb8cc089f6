"""The BTYD baselines in every evaluation: BG/NBD, Pareto/NBD and Gamma-Gamma beside each
model.

For the churn, repurchase and value models the trainer adds these rows to the evaluation
table, fitted by maximum likelihood (no penalty; :func:`kizuna.training.btyd.fit_count_model`)
on the same data the model saw (orders up to the test cutoff, daily periods) and scored on
the same held-out rows:

* ``bgnbd``: churn risk 1 - P(a purchase within H days); P(purchase within 7..90 days)
  and the P25 / median / P75 days to the next purchase read from that curve as the
  timing model reads its own (none beyond its last horizon).
* ``pareto_nbd``: churn risk 1 - P(a purchase within H days) under Pareto/NBD.
* ``bgnbd_p_alive``: churn risk 1 - P(alive), the textbook reading. It gives every
  one-time buyer P(alive) = 1, so it ranks those churners backwards.
* ``bgnbd_gamma_gamma`` / ``pareto_nbd_gamma_gamma``: value as the count model's
  conditional expected purchases in the label window times Gamma-Gamma's expected spend;
  given a ``future_purchase_days`` label they also carry :func:`count_report`.

A baseline that cannot be fitted keeps its rows, with NaN metrics; the reason is logged as
a warning and kept in the table's ``attrs["baseline_notes"]`` (row name -> reason), since
the table holds numbers only.
"""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pandas as pd

from kizuna.features.compute import Tables
from kizuna.training.btyd import COUNT_MODELS, BtydBaseline, BtydError, rfm_summary
from kizuna.training.evaluate import classification_report, count_report, value_report
from kizuna.training.repurchase import (
    HORIZON_DAYS,
    HORIZONS,
    QUANTILE_DAYS,
    UNLIKELY,
    crossing_days,
    score_outputs,
)

log = logging.getLogger(__name__)

# Days at which the BG/NBD purchase curve is read for the days survival crosses a level:
# every day to the timing model's last horizon.
_CURVE_DAYS = np.arange(1, HORIZON_DAYS + 1, dtype=float)


# The metric names of a row that could not be scored, per kind of row.
_NAN_ROWS = {
    "churn": dict.fromkeys(classification_report([0, 1], [0.0, 1.0]), np.nan),
    "value": dict.fromkeys(value_report([0.0, 1.0], [0.0, 1.0]), np.nan),
    "repurchase": {"concordance": np.nan},
}


def _fitted(
    con, tables: Tables, cutoff, model: str, fit_spend: bool, penalizer: float = 0.0
) -> tuple[BtydBaseline, pd.DataFrame]:
    summary = rfm_summary(con, tables, cutoff.to_pydatetime(), period_days=1)
    return BtydBaseline(model, penalizer=penalizer, fit_spend=fit_spend).fit(summary), summary


def _timing_days(baseline: BtydBaseline, summary: pd.DataFrame) -> dict[str, np.ndarray]:
    """The timing model's P25 / median / P75 days and unlikely flag from BG/NBD's
    P(purchase within t), read daily to the last horizon (log-linear between days)."""
    survival = np.column_stack([1 - baseline.p_buy_within(summary, t) for t in _CURVE_DAYS])
    out = {name: crossing_days(_CURVE_DAYS, survival, q) for name, q in QUANTILE_DAYS.items()}
    out[UNLIKELY] = survival[:, -1] > 0.5
    return out


def btyd_rows(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    name: str,
    test: pd.DataFrame,
    label_days: int,
    penalizer: float = 0.0,
) -> pd.DataFrame:
    """Evaluation rows of the BTYD baselines for model ``name`` on ``test``.

    ``test`` holds one cutoff (its ``event_timestamp``); ``tables`` must hold nothing after
    the end of the training data. Returns an empty table for the offer model. A baseline
    that cannot be fitted keeps its rows with NaN metrics, and the reason is logged and
    kept in ``attrs["baseline_notes"]``.

    Args:
        penalizer: the count models' L2 penalty (lifetimes' ``penalizer_coef``).
    """
    if name not in ("churn", "repurchase", "value") or test.empty:
        return pd.DataFrame()
    cutoff = pd.Timestamp(test["event_timestamp"].max())
    models = ("bgnbd",) if name == "repurchase" else COUNT_MODELS
    rows: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    for model in models:
        try:
            baseline, summary = _fitted(con, tables, cutoff, model, name == "value", penalizer)
        except BtydError as exc:
            log.warning("%s baseline unscored at %s: %s", model, cutoff, exc)
            for row in _row_names(name, model):
                rows[row] = dict(_NAN_ROWS[name])
                notes[row] = str(exc)
            continue
        summary = summary.reindex(test["customer_id"].astype(str))
        summary = summary.fillna({"frequency": 0, "recency": 0, "T": 0, "monetary_value": 0})
        rows.update(_scored(name, model, baseline, summary, test, label_days))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["baseline_notes"] = notes
    return table


def _row_names(name: str, model: str) -> list[str]:
    if name == "value":
        return [f"{model}_gamma_gamma"]
    return [model, "bgnbd_p_alive"] if name == "churn" and model == "bgnbd" else [model]


def _scored(
    name: str,
    model: str,
    baseline: BtydBaseline,
    summary: pd.DataFrame,
    test: pd.DataFrame,
    label_days: int,
) -> dict[str, dict[str, float]]:
    """The rows of one fitted count model, on ``summary`` aligned with ``test``."""
    rows: dict[str, dict[str, float]] = {}
    if name == "churn":
        known = test["churned"].notna().to_numpy()
        y = test["churned"].to_numpy()[known].astype(int)
        churn = 1 - baseline.p_buy_within(summary, label_days)
        rows[model] = classification_report(y, churn[known])
        if model == "bgnbd":
            alive = baseline.p_alive(summary)[known]
            rows["bgnbd_p_alive"] = classification_report(y, 1 - alive)
    elif name == "repurchase":
        outputs = {f"p_buy_{h}d": baseline.p_buy_within(summary, h) for h in HORIZONS}
        outputs |= _timing_days(baseline, summary)
        rows[model] = score_outputs(test, pd.DataFrame(outputs, index=test.index))
    else:
        known = test["future_value"].notna().to_numpy()
        actual = test["future_value"].to_numpy(dtype=float)[known]
        expected = baseline.expected_purchases(summary, label_days)
        predicted = baseline.expected_spend(summary) * expected
        row = value_report(actual, np.nan_to_num(predicted[known]))
        if "future_purchase_days" in test.columns:
            counted = test["future_purchase_days"].notna().to_numpy()
            days = test["future_purchase_days"].to_numpy(dtype=float)[counted]
            row |= count_report(days, np.nan_to_num(expected[counted]))
        rows[f"{model}_gamma_gamma"] = row
    return rows
