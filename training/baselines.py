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
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from kizuna.features.compute import Tables
from kizuna.training.btyd import COUNT_MODELS, BtydBaseline, BtydError, rfm_summary
from kizuna.training.evaluate import classification_report, count_report, value_report
from kizuna.training.models import resolve, spec
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


Rows = dict[str, dict[str, float]]


@dataclass(frozen=True)
class BtydBaselines:
    """How one model is compared with the BTYD count models (its spec's ``baselines``).

    Attributes:
        count_models: the count models fitted (``bgnbd``, ``pareto_nbd``).
        fit_spend: also fit Gamma-Gamma's spend model.
        score: (count model name, fitted baseline, summary aligned with the test rows, test
            rows, label days) -> the rows it adds, name -> metrics.
        row_names: count model name -> the rows it adds (kept with NaN when unfitted).
        empty_row: the metrics of a row that could not be scored (all NaN).
    """

    count_models: tuple[str, ...]
    score: Callable[[str, BtydBaseline, pd.DataFrame, pd.DataFrame, int], Rows]
    row_names: Callable[[str], list[str]]
    empty_row: dict[str, float]
    fit_spend: bool = False


def _churn_rows(
    model: str, baseline: BtydBaseline, summary: pd.DataFrame, test: pd.DataFrame, days: int
) -> Rows:
    known = test["churned"].notna().to_numpy()
    y = test["churned"].to_numpy()[known].astype(int)
    churn = 1 - baseline.p_buy_within(summary, days)
    rows = {model: classification_report(y, churn[known])}
    if model == "bgnbd":
        alive = baseline.p_alive(summary)[known]
        rows["bgnbd_p_alive"] = classification_report(y, 1 - alive)
    return rows


def _repurchase_rows(
    model: str, baseline: BtydBaseline, summary: pd.DataFrame, test: pd.DataFrame, _days: int
) -> Rows:
    outputs = {f"p_buy_{h}d": baseline.p_buy_within(summary, h) for h in HORIZONS}
    outputs |= _timing_days(baseline, summary)
    return {model: score_outputs(test, pd.DataFrame(outputs, index=test.index))}


def _value_rows(
    model: str, baseline: BtydBaseline, summary: pd.DataFrame, test: pd.DataFrame, days: int
) -> Rows:
    known = test["future_value"].notna().to_numpy()
    actual = test["future_value"].to_numpy(dtype=float)[known]
    expected = baseline.expected_purchases(summary, days)
    predicted = baseline.expected_spend(summary) * expected
    row = value_report(actual, np.nan_to_num(predicted[known]))
    if "future_purchase_days" in test.columns:
        counted = test["future_purchase_days"].notna().to_numpy()
        counts = test["future_purchase_days"].to_numpy(dtype=float)[counted]
        row |= count_report(counts, np.nan_to_num(expected[counted]))
    return {f"{model}_gamma_gamma": row}


CHURN = BtydBaselines(
    count_models=COUNT_MODELS,
    score=_churn_rows,
    row_names=lambda model: [model, "bgnbd_p_alive"] if model == "bgnbd" else [model],
    empty_row=dict.fromkeys(classification_report([0, 1], [0.0, 1.0]), np.nan),
)
REPURCHASE = BtydBaselines(
    count_models=("bgnbd",),
    score=_repurchase_rows,
    row_names=lambda model: [model],
    empty_row={"concordance": np.nan},
)
VALUE = BtydBaselines(
    count_models=COUNT_MODELS,
    score=_value_rows,
    row_names=lambda model: [f"{model}_gamma_gamma"],
    empty_row=dict.fromkeys(value_report([0.0, 1.0], [0.0, 1.0]), np.nan),
    fit_spend=True,
)


def btyd_rows(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    name: str,
    test: pd.DataFrame,
    label_days: int,
    penalizer: float = 0.0,
) -> pd.DataFrame:
    """Evaluation rows of the BTYD baselines of model ``name`` (its spec's ``baselines``)
    on ``test``.

    ``test`` holds one cutoff (its ``event_timestamp``); ``tables`` must hold nothing after
    the end of the training data. Returns an empty table for a model without BTYD
    baselines (the offer model). A baseline that cannot be fitted keeps its rows with NaN
    metrics, and the reason is logged and kept in ``attrs["baseline_notes"]``.

    Args:
        penalizer: the count models' L2 penalty (lifetimes' ``penalizer_coef``).
    """
    reference = spec(name).baselines
    if reference is None or test.empty:
        return pd.DataFrame()
    baselines: BtydBaselines = resolve(reference)
    cutoff = pd.Timestamp(test["event_timestamp"].max())
    rows: Rows = {}
    notes: dict[str, str] = {}
    for model in baselines.count_models:
        try:
            baseline, summary = _fitted(con, tables, cutoff, model, baselines.fit_spend, penalizer)
        except BtydError as exc:
            log.warning("%s baseline unscored at %s: %s", model, cutoff, exc)
            for row in baselines.row_names(model):
                rows[row] = dict(baselines.empty_row)
                notes[row] = str(exc)
            continue
        summary = summary.reindex(test["customer_id"].astype(str))
        summary = summary.fillna({"frequency": 0, "recency": 0, "T": 0, "monetary_value": 0})
        rows.update(baselines.score(model, baseline, summary, test, label_days))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["baseline_notes"] = notes
    return table
