"""Repurchase timing: a discrete-time hazard model, LightGBM on person-period rows.

Each (customer, cutoff) row becomes one row per period of :data:`PERIOD_EDGES` that the
customer entered still waiting for their next purchase, with the period's start as a
feature and ``bought`` = the purchase fell in that period. Rows stop at the purchase, or
at censoring: a customer observed for d days without buying contributes only the periods
that end by day d. The chance of buying by a horizon is ``1 - prod(1 - hazard)`` over the
periods up to it, non-decreasing in the horizon by construction.

Expected days to the next purchase is the mean of min(T, :data:`MAX_DAYS`): within each
period the hazard is spread as a constant daily rate, and after the last period that
period's daily rate continues until :data:`MAX_DAYS`, where the mean is capped (a customer
silent for two years counts as two years, not forever).

The ``rfm`` baseline is the same survival arithmetic with hazards from the training rows'
life table per RFM segment; ``overall`` uses one life table for everyone.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from kizuna.training.base import MODEL_ROW, lgb_matrix, lgb_threads, model_inputs
from kizuna.training.evaluate import concordance_index, horizon_report

logger = logging.getLogger(__name__)

#: Period boundaries in days after the cutoff; each end is also a reported horizon.
PERIOD_EDGES = (0, 7, 14, 30, 60, 90)
HORIZONS = PERIOD_EDGES[1:]
#: Expected days are capped here (the restricted mean of the time to next purchase).
MAX_DAYS = 730
#: The period feature the hazard model reads beside the FeatureService's columns.
PERIOD_FEATURE = "period_start_days"
BASELINES = ("rfm", "overall")


def person_periods(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (row of ``frame``, period it was at risk in).

    Columns: ``row`` (position in ``frame``), ``period`` (index into the periods),
    ``period_start_days`` and ``bought`` (the next purchase fell in this period).
    """
    days = frame["days_to_next_purchase"].to_numpy(dtype=float)[:, None]
    repurchased = frame["repurchased"].to_numpy(dtype=bool)[:, None]
    start = np.asarray(PERIOD_EDGES[:-1], dtype=float)[None, :]
    end = np.asarray(PERIOD_EDGES[1:], dtype=float)[None, :]
    # Waiting at the period's start; a censored row must also be watched to its end.
    at_risk = (days > start) & (repurchased | (days >= end))
    row, period = np.nonzero(at_risk)
    return pd.DataFrame(
        {
            "row": row,
            "period": period,
            PERIOD_FEATURE: start[0, period],
            "bought": (repurchased & (days <= end))[row, period],
        }
    )


def summarize(hazards: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """``p_buy_<h>d`` per horizon and ``expected_days_to_next_purchase`` from per-period
    hazards (rows x periods), as described in the module docstring."""
    hazards = np.clip(hazards, 1e-9, 1 - 1e-9)
    lengths = np.diff(PERIOD_EDGES).astype(float)
    survival = np.cumprod(1 - hazards, axis=1)
    at_start = np.hstack([np.ones((len(hazards), 1)), survival[:, :-1]])
    # Constant daily rate within a period: the area under survival there is S0 * h / rate.
    rates = -np.log1p(-hazards) / lengths
    expected = (at_start * hazards / rates).sum(axis=1)
    tail = MAX_DAYS - PERIOD_EDGES[-1]
    expected += survival[:, -1] * -np.expm1(-rates[:, -1] * tail) / rates[:, -1]
    out = pd.DataFrame(1 - survival, index=index, columns=[f"p_buy_{h}d" for h in HORIZONS])
    out["expected_days_to_next_purchase"] = expected
    return out


def _life_table(periods: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Purchases / customers at risk per (group, period): the empirical hazards."""
    table = periods.assign(group=groups.to_numpy()[periods["row"]])
    return table.groupby(["group", "period"])["bought"].mean().unstack("period")


class RepurchaseModel:
    """When a customer buys next: P(buy within 7/14/30/60/90 days) and expected days.

    Args:
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate, num_leaves, min_child_samples: LightGBM's own.
        seed: for LightGBM's sampling.
        n_jobs: LightGBM threads (None: all cores, slow when they are shared).
    """

    name: ClassVar[str] = "repurchase"
    service: ClassVar[str] = "repurchase_v1"
    primary_metric: ClassVar[str] = "concordance"
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 100,
        seed: int = 7,
        n_jobs: int | None = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.n_jobs = n_jobs

    def _inputs(self, frame: pd.DataFrame, periods: pd.DataFrame) -> pd.DataFrame:
        x = model_inputs(frame, self.features_).iloc[periods["row"].to_numpy()]
        x = x.reset_index(drop=True)
        x[PERIOD_FEATURE] = periods[PERIOD_FEATURE].to_numpy()
        return x

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> RepurchaseModel:
        """Train on the training cutoffs' person-periods; stop early on the validation's."""
        self.features_ = list(features)
        train_periods, valid_periods = person_periods(train), person_periods(valid)
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "verbose": -1,
        }
        if self.n_jobs is not None:
            params["num_threads"] = self.n_jobs
        train_set = lgb.Dataset(self._inputs(train, train_periods), train_periods["bought"])
        valid_set = lgb.Dataset(
            self._inputs(valid, valid_periods), valid_periods["bought"], reference=train_set
        )
        self.booster_ = lgb.train(
            params,
            train_set,
            num_boost_round=self.n_estimators,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        self.overall_hazards_ = _life_table(train_periods, pd.Series(0, index=train.index))
        self.rfm_hazards_ = _life_table(train_periods, train["rfm_segment"].astype(object))
        logger.info(
            "repurchase: %d person-periods from %d rows, %d rounds",
            len(train_periods),
            len(train),
            self.best_iteration_,
        )
        return self

    def hazards(self, frame: pd.DataFrame) -> np.ndarray:
        """P(buy in period k | not bought before it), rows x periods."""
        # One matrix of the rows, its last column (the period) set in turn: the same
        # predictions as one person-period frame, without copying the rows per period.
        x = lgb_matrix(
            model_inputs(frame, self.features_), self.booster_.pandas_categorical, spare=1
        )
        h = np.empty((len(frame), len(HORIZONS)))
        for k, start in enumerate(PERIOD_EDGES[:-1]):
            x[:, -1] = start
            h[:, k] = self.booster_.predict(
                x, num_iteration=self.best_iteration_, num_threads=lgb_threads(self.n_jobs)
            )
        return h

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``p_buy_7d`` ... ``p_buy_90d`` and ``expected_days_to_next_purchase`` per row."""
        return summarize(self.hazards(frame), frame.index)

    def contributions(self, frame: pd.DataFrame, period_start: float = 14.0) -> pd.DataFrame:
        """Per-row SHAP values (log-odds) of the hazard in the period starting at
        ``period_start`` days (default: days 14-30); the reasons behind a timing."""
        periods = pd.DataFrame(
            {"row": np.arange(len(frame)), PERIOD_FEATURE: np.full(len(frame), period_start)}
        )
        values = self.booster_.predict(
            self._inputs(frame, periods),
            num_iteration=self.best_iteration_,
            pred_contrib=True,
            num_threads=lgb_threads(self.n_jobs),
        )
        return pd.DataFrame(
            values[:, : len(self.features_)], columns=self.features_, index=frame.index
        )

    def baseline_predictions(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """The baselines' outputs, same columns as :meth:`predict`: ``rfm`` (training life
        table of the row's RFM segment, overall where the segment is unseen) and
        ``overall`` (one training life table for everyone)."""
        overall = self.overall_hazards_.to_numpy()[0]
        segment = frame["rfm_segment"].astype(object)
        rfm = self.rfm_hazards_.reindex(segment).to_numpy()
        rfm = np.where(np.isnan(rfm), overall, rfm)
        return {
            "rfm": summarize(rfm, frame.index),
            "overall": summarize(np.tile(overall, (len(frame), 1)), frame.index),
        }


def score_outputs(test: pd.DataFrame, predicted: pd.DataFrame) -> dict[str, float]:
    days = test["days_to_next_purchase"].to_numpy(dtype=float)
    bought = test["repurchased"].to_numpy(dtype=bool)
    out = {
        "concordance": concordance_index(days, predicted["expected_days_to_next_purchase"], bought)
    }
    for h in HORIZONS:
        report = horizon_report(days, bought, predicted[f"p_buy_{h}d"], h)
        out[f"brier_{h}d"] = report["brier"]
        out[f"auc_{h}d"] = report["auc"]
    at_30 = horizon_report(days, bought, predicted["p_buy_30d"], 30)
    out["ece_30d"] = at_30["ece"]
    out["mean_p_buy_30d"] = at_30["mean_predicted"]
    out["observed_rate_30d"] = at_30["observed_rate"]
    return out


def evaluate(model: RepurchaseModel, test: pd.DataFrame) -> pd.DataFrame:
    """Concordance of expected days with the observed (censored) times, Brier and AUC per
    horizon over the rows whose horizon was observed, and calibration of P(buy within
    30 days); one row for the model (``kizuna``) and one per baseline."""
    scorers = {MODEL_ROW: model.predict(test), **model.baseline_predictions(test)}
    return pd.DataFrame({name: score_outputs(test, out) for name, out in scorers.items()}).T
