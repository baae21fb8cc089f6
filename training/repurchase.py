"""Repurchase timing: a discrete-time hazard model, LightGBM on person-period rows.

Each (customer, cutoff) row becomes one row per period of :data:`PERIOD_EDGES` that the
customer entered still waiting for their next purchase, with the period's start as a
feature and ``bought`` = the purchase fell in that period. Rows stop at the purchase, or
at censoring: a customer observed for d days without buying contributes only the periods
that end by day d. The chance of buying by a horizon is ``1 - prod(1 - hazard)`` over the
periods up to it, non-decreasing in the horizon by construction.

The next purchase is dated by its median: the day survival falls to 50%, with the days it
falls to 75% and 25% as the P25-P75 range (within a period the hazard is spread as a
constant daily rate, so survival falls log-linearly between the period edges). A crossing
after the model's last horizon (:data:`HORIZON_DAYS`) is not extrapolated: the day is
NaN, and a median beyond it flags the customer ``buy_unlikely_within_horizon``.
``overdue`` marks customers already past their own usual gap between orders.

The ``rfm`` baseline is the same survival arithmetic with hazards from the training rows'
life table per RFM segment; ``overall`` uses one life table for everyone;
``own_median_gap`` dates the next purchase when the customer's median gap is reached.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from kizuna.training.base import MODEL_ROW, lgb_matrix, lgb_threads, model_inputs
from kizuna.training.btyd_features import COLUMNS as BTYD_COLUMNS
from kizuna.training.btyd_features import OUTPUTS as BTYD_OUTPUTS
from kizuna.training.btyd_features import WINDOW as BTYD_WINDOW
from kizuna.training.btyd_features import BtydFeatures
from kizuna.training.evaluate import concordance_index, horizon_report
from kizuna.training.horizons import HORIZON_DAYS, HORIZONS, PERIOD_EDGES

logger = logging.getLogger(__name__)

#: Timing columns -> the survival level whose crossing day they are (P(bought) 25/50/75%).
QUANTILE_DAYS = {
    "p25_days_to_next_purchase": 0.75,
    "median_days_to_next_purchase": 0.5,
    "p75_days_to_next_purchase": 0.25,
}
MEDIAN = "median_days_to_next_purchase"
UNLIKELY = "buy_unlikely_within_horizon"
#: The period feature the hazard model reads beside the FeatureService's columns.
PERIOD_FEATURE = "period_start_days"
BASELINES = ("rfm", "overall", "own_median_gap")


def person_periods(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (row of ``frame``, period it was at risk in).

    Columns: ``row`` (position in ``frame``), ``period`` (index into the periods),
    ``period_start_days`` and ``bought`` (the next purchase fell in this period).

    A period counts only for rows watched to its end (``observed_days``: how long the data
    run after the cutoff), buyers and non-buyers alike. Keeping a purchase inside a period
    the data stop in while dropping the non-buyers of that period would make its hazard
    look like 1: with labels cut at a test cutoff (expanding windows), most late cutoffs
    stop inside a period.
    """
    days = frame["days_to_next_purchase"].to_numpy(dtype=float)[:, None]
    repurchased = frame["repurchased"].to_numpy(dtype=bool)[:, None]
    if "observed_days" in frame.columns:
        observed = frame["observed_days"].to_numpy(dtype=float)[:, None]
    else:  # a frame without it: a censored row's days are its observation
        observed = np.where(repurchased, np.inf, days)
    start = np.asarray(PERIOD_EDGES[:-1], dtype=float)[None, :]
    end = np.asarray(PERIOD_EDGES[1:], dtype=float)[None, :]
    # Waiting at the period's start, and watched to its end.
    at_risk = (days > start) & (observed >= end)
    row, period = np.nonzero(at_risk)
    return pd.DataFrame(
        {
            "row": row,
            "period": period,
            PERIOD_FEATURE: start[0, period],
            "bought": (repurchased & (days <= end))[row, period],
        }
    )


def crossing_days(days: np.ndarray, survival: np.ndarray, level: float) -> np.ndarray:
    """Per row, the day survival falls to ``level``; NaN when it stays above it to the end.

    Args:
        days: increasing days after the cutoff (after 0, where survival is 1).
        survival: P(not bought by each of ``days``), rows x days, non-increasing.
        level: the survival level, in (0, 1).

    Between two of ``days`` survival falls at a constant daily rate (log-linearly).
    """
    days = np.concatenate([[0.0], np.asarray(days, dtype=float)])
    survival = np.hstack([np.ones((len(survival), 1)), np.asarray(survival, dtype=float)])
    below = survival <= level
    crossed = below.any(axis=1)
    end = np.where(crossed, np.argmax(below, axis=1), 1)  # first day at or below level
    rows = np.arange(len(survival))
    before, after = survival[rows, end - 1], survival[rows, end]
    with np.errstate(divide="ignore", invalid="ignore"):
        # A survival of 0 after: an infinite rate, so the fall is at once (share 0).
        share = np.log(before / level) / np.log(before / after)
    crossing = days[end - 1] + share * (days[end] - days[end - 1])
    return np.where(crossed, crossing, np.nan)


def summarize(hazards: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """``p_buy_<h>d`` per horizon, the P25 / median / P75 days to the next purchase and
    ``buy_unlikely_within_horizon`` from per-period hazards (rows x periods), as described
    in the module docstring."""
    hazards = np.clip(hazards, 1e-9, 1 - 1e-9)
    survival = np.cumprod(1 - hazards, axis=1)
    out = pd.DataFrame(1 - survival, index=index, columns=[f"p_buy_{h}d" for h in HORIZONS])
    for name, level in QUANTILE_DAYS.items():
        out[name] = crossing_days(np.asarray(HORIZONS), survival, level)
    out[UNLIKELY] = survival[:, -1] > 0.5
    return out


def overdue(frame: pd.DataFrame) -> pd.Series:
    """Past their own cycle: ``days_since_last_order`` > ``gap_median_days`` (the
    ``overdue_index`` feature above 1); NA without two order days to have a gap."""
    since = pd.to_numeric(frame["days_since_last_order"], errors="coerce")
    gap = pd.to_numeric(frame["gap_median_days"], errors="coerce")
    return (since > gap).astype("boolean").mask(since.isna() | gap.isna())


def own_gap_timing(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``own_median_gap`` baseline: the next purchase when the customer's median gap
    is reached, ``gap_median_days - days_since_last_order`` floored at 0 (NaN without a
    gap); beyond :data:`HORIZON_DAYS` it is flagged like the model's."""
    since = pd.to_numeric(frame["days_since_last_order"], errors="coerce")
    gap = pd.to_numeric(frame["gap_median_days"], errors="coerce")
    days = (gap - since).clip(lower=0)
    return pd.DataFrame({MEDIAN: days, UNLIKELY: days > HORIZON_DAYS}, index=frame.index)


def _life_table(periods: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Purchases / customers at risk per (group, period): the empirical hazards."""
    table = periods.assign(group=groups.to_numpy()[periods["row"]])
    return table.groupby(["group", "period"])["bought"].mean().unstack("period")


class RepurchaseModel:
    """When a customer buys next: P(buy within 7/14/30/60/90 days), the median day with
    its P25-P75 range, and whether they are overdue.

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

    def with_btyd(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with BG/NBD's reading of the model's horizon (a customer's state: the
        same 90 days whatever window the row's own label had)."""
        return self.btyd_.transform(frame.drop(columns=[BTYD_WINDOW], errors="ignore"))

    def _inputs(self, frame: pd.DataFrame, periods: pd.DataFrame) -> pd.DataFrame:
        x = model_inputs(self.with_btyd(frame), self.features_).iloc[periods["row"].to_numpy()]
        x = x.reset_index(drop=True)
        x[PERIOD_FEATURE] = periods[PERIOD_FEATURE].to_numpy()
        return x

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> RepurchaseModel:
        """Train on the training cutoffs' person-periods; stop early on the validation's."""
        self.btyd_ = BtydFeatures(PERIOD_EDGES[-1]).fit(pd.concat([train, valid]))
        self.input_features_ = [f for f in features if f not in BTYD_COLUMNS]
        self.features_ = [*self.input_features_, *BTYD_OUTPUTS]
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
        self.overall_hazards_ = _life_table(train_periods, pd.Series(0, index=train.index))
        train_set = lgb.Dataset(
            self._inputs(train, train_periods),
            train_periods["bought"],
            init_score=self._offset(train)[train_periods["row"], train_periods["period"]],
        )
        valid_set = lgb.Dataset(
            self._inputs(valid, valid_periods),
            valid_periods["bought"],
            init_score=self._offset(valid)[valid_periods["row"], valid_periods["period"]],
            reference=train_set,
        )
        self.booster_ = lgb.train(
            params,
            train_set,
            num_boost_round=self.n_estimators,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        self.rfm_hazards_ = _life_table(train_periods, train["rfm_segment"].astype(object))
        logger.info(
            "repurchase: %d person-periods from %d rows, %d rounds",
            len(train_periods),
            len(train),
            self.best_iteration_,
        )
        return self

    def _offset(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-odds of BG/NBD's hazard per row and period (rows x periods), where the trees
        start: the model learns a correction to BG/NBD's timing. Rows BG/NBD cannot read
        (no order yet) start from the training life table."""
        survival = 1 - self.btyd_.p_buy(frame, HORIZONS)
        survival = np.hstack([np.ones((len(frame), 1)), survival])
        with np.errstate(divide="ignore", invalid="ignore"):
            hazard = 1 - survival[:, 1:] / survival[:, :-1]
        overall = self.overall_hazards_.to_numpy()[0]
        hazard = np.where(np.isfinite(hazard), hazard, overall[None, :])
        hazard = np.clip(hazard, 1e-4, 1 - 1e-4)
        return np.log(hazard / (1 - hazard))

    def hazards(self, frame: pd.DataFrame) -> np.ndarray:
        """P(buy in period k | not bought before it), rows x periods."""
        # One matrix of the rows, its last column (the period) set in turn: the same
        # predictions as one person-period frame, without copying the rows per period.
        x = lgb_matrix(
            model_inputs(self.with_btyd(frame), self.features_),
            self.booster_.pandas_categorical,
            spare=1,
        )
        offset = self._offset(frame)
        h = np.empty((len(frame), len(HORIZONS)))
        for k, start in enumerate(PERIOD_EDGES[:-1]):
            x[:, -1] = start
            raw = self.booster_.predict(
                x,
                num_iteration=self.best_iteration_,
                num_threads=lgb_threads(self.n_jobs),
                raw_score=True,
            )
            h[:, k] = 1 / (1 + np.exp(-(raw + offset[:, k])))
        return h

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per row: ``p_buy_7d`` ... ``p_buy_90d``; ``p25_``, ``median_`` and
        ``p75_days_to_next_purchase`` (NaN beyond :data:`HORIZON_DAYS`);
        ``buy_unlikely_within_horizon`` (P(buy within it) < 0.5, so no median); and
        ``overdue`` (see :func:`overdue`)."""
        out = summarize(self.hazards(frame), frame.index)
        out["overdue"] = overdue(frame)
        return out

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
        """The life-table baselines' outputs, same columns as :meth:`predict`: ``rfm``
        (training life table of the row's RFM segment, overall where the segment is
        unseen) and ``overall`` (one training life table for everyone)."""
        overall = self.overall_hazards_.to_numpy()[0]
        segment = frame["rfm_segment"].astype(object)
        rfm = self.rfm_hazards_.reindex(segment).to_numpy()
        rfm = np.where(np.isnan(rfm), overall, rfm)
        flags = overdue(frame)
        return {
            "rfm": summarize(rfm, frame.index).assign(overdue=flags),
            "overall": summarize(np.tile(overall, (len(frame), 1)), frame.index).assign(
                overdue=flags
            ),
        }


def timing_rank(predicted: pd.DataFrame) -> np.ndarray:
    """A finite score that orders customers by when they buy next: the median day, and
    after every dated customer those unlikely within the horizon, by P(buy within it)."""
    median = predicted[MEDIAN].to_numpy(dtype=float)
    later = HORIZON_DAYS + 1 - predicted[f"p_buy_{HORIZON_DAYS}d"].to_numpy(dtype=float)
    return np.where(predicted[UNLIKELY].to_numpy(dtype=bool), later, median)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def timing_errors(test: pd.DataFrame, predicted: pd.DataFrame) -> dict[str, float]:
    """How far the predicted median day is from the observed next purchase.

    Over the rows whose next purchase was observed (``repurchased``), on days clipped at
    :data:`HORIZON_DAYS`: a customer flagged unlikely within the horizon counts as
    predicted at the horizon, and a flag followed by a purchase after it is no error.

    * ``median_abs_error_days``: median |predicted - actual| over the repurchasers with
      two order days or more (a ``gap_median_days``), the rows every scorer, the
      ``own_median_gap`` baseline included, can date: like with like.
    * ``median_abs_error_days_all``: the same over every repurchaser (NaN for a scorer
      that cannot date some of them).
    * ``coverage_p25_p75``: the share of the observed repurchase days within the
      predicted P25-P75 range (a P75 beyond the horizon leaves the range open-ended);
      only for scorers with a range.
    """
    days = test["days_to_next_purchase"].to_numpy(dtype=float)
    bought = test["repurchased"].to_numpy(dtype=bool)
    unlikely = predicted[UNLIKELY].to_numpy(dtype=bool)
    median = predicted[MEDIAN].to_numpy(dtype=float)
    guess = np.where(unlikely, HORIZON_DAYS, np.minimum(median, HORIZON_DAYS))
    error = np.abs(guess - np.minimum(days, HORIZON_DAYS))
    has_gap = test["gap_median_days"].notna().to_numpy()
    out = {
        "median_abs_error_days": _median(error[bought & has_gap]),
        "median_abs_error_days_all": _median(error[bought]),
    }
    if "p25_days_to_next_purchase" in predicted:
        low = predicted["p25_days_to_next_purchase"].fillna(HORIZON_DAYS).to_numpy(dtype=float)
        high = predicted["p75_days_to_next_purchase"].fillna(np.inf).to_numpy(dtype=float)
        inside = (days >= low) & (days <= high)
        out["coverage_p25_p75"] = float(inside[bought].mean()) if bought.any() else np.nan
    return out


def score_outputs(test: pd.DataFrame, predicted: pd.DataFrame) -> dict[str, float]:
    """The evaluation row of one scorer's timing outputs on ``test`` (see :func:`evaluate`)."""
    days = test["days_to_next_purchase"].to_numpy(dtype=float)
    bought = test["repurchased"].to_numpy(dtype=bool)
    out = {"concordance": concordance_index(days, timing_rank(predicted), bought)}
    for h in HORIZONS:
        report = horizon_report(days, bought, predicted[f"p_buy_{h}d"], h)
        out[f"brier_{h}d"] = report["brier"]
        out[f"auc_{h}d"] = report["auc"]
    at_30 = horizon_report(days, bought, predicted["p_buy_30d"], 30)
    out["ece_30d"] = at_30["ece"]
    out["mean_p_buy_30d"] = at_30["mean_predicted"]
    out["observed_rate_30d"] = at_30["observed_rate"]
    return {**out, **timing_errors(test, predicted)}


def evaluate(model: RepurchaseModel, test: pd.DataFrame) -> pd.DataFrame:
    """Concordance of the predicted order of purchases (:func:`timing_rank`) with the
    observed (censored) times, Brier and AUC per horizon over the rows whose horizon was
    observed, calibration of P(buy within 30 days) and the errors of the median day
    (:func:`timing_errors`); one row for the model (``kizuna``) and one per baseline
    (``own_median_gap`` has the median-day errors only)."""
    scorers = {MODEL_ROW: model.predict(test), **model.baseline_predictions(test)}
    rows = {name: score_outputs(test, out) for name, out in scorers.items()}
    rows["own_median_gap"] = timing_errors(test, own_gap_timing(test))
    return pd.DataFrame(rows).T
