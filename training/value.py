"""Customer value: spend over the label window, LightGBM with a Tweedie objective.

Future spend is zero-inflated (many customers buy nothing in the window) and right-skewed
(a few spend a lot), which is what a Tweedie loss with a log link models: a point mass at
zero plus a continuous positive part, and predictions that are never negative.

The label is net of returns, so a customer who mostly returned goods in the window has a
negative target. Tweedie cannot fit negative values, so training clips targets at 0 (such
a customer brought no revenue); evaluation keeps the raw, net values.

Baselines, scored beside the model on the same rows:

* ``last_period_spend``: what the customer spent before the cutoff, scaled to the label
  window (``spend_<w>d`` of the shortest feature window ``w`` covering it, times
  ``value_days / w``): "next period looks like the last one".
* ``rfm``: the mean future value of the training rows in the customer's RFM segment.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from kizuna.training.base import MODEL_ROW, lgb_threads, model_inputs
from kizuna.training.btyd_features import COLUMNS as BTYD_COLUMNS
from kizuna.training.btyd_features import OUTPUTS as BTYD_OUTPUTS
from kizuna.training.btyd_features import WINDOW, BtydFeatures
from kizuna.training.evaluate import count_report, value_report

logger = logging.getLogger(__name__)

#: The spend windows (days) of the purchase features, ``spend_<w>d``.
SPEND_WINDOWS = (30, 90, 180, 365)
BASELINES = ("last_period_spend", "rfm")
# Floor of BG/NBD's expected purchases in the offset, so its log stays finite.
MIN_EXPECTED = 1e-3


def offset(frame: pd.DataFrame) -> np.ndarray:
    """log of BG/NBD's expected purchase days in each row's window (the heads' start)."""
    expected = frame["bgnbd_expected_purchases_window"].to_numpy(dtype=float)
    return np.log(np.maximum(np.nan_to_num(expected, nan=MIN_EXPECTED), MIN_EXPECTED))


def last_period_spend(frame: pd.DataFrame, value_days: int) -> np.ndarray:
    """Spend in the feature window that covers ``value_days``, scaled to ``value_days``."""
    window = next((w for w in SPEND_WINDOWS if w >= value_days), SPEND_WINDOWS[-1])
    spend = frame[f"spend_{window}d"].to_numpy(dtype=float)
    return np.nan_to_num(spend, nan=0.0) * value_days / window


class ValueModel:
    """Expected spend per customer over the next ``value_days`` days.

    Args:
        value_days: the label window of ``future_value``; used only to scale the
            ``last_period_spend`` baseline, so it must match the labels.
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate, num_leaves, min_child_samples: LightGBM's own.
        tweedie_variance_power: between 1 (Poisson) and 2 (gamma); LightGBM's default.
        seed: for LightGBM's sampling.
        n_jobs: LightGBM threads (None: all cores, slow when they are shared).
    """

    name: ClassVar[str] = "value"
    service: ClassVar[str] = "value_v1"
    primary_metric: ClassVar[str] = "gini"
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        value_days: int = 365,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        tweedie_variance_power: float = 1.5,
        seed: int = 7,
        n_jobs: int | None = 1,
    ) -> None:
        self.value_days = value_days
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.tweedie_variance_power = tweedie_variance_power
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> ValueModel:
        """Train on the labelled training rows; stop early on the validation rows.

        Rows without ``future_value`` (their window runs past the data) are left out. Both
        heads start from BG/NBD's expected purchases in the row's own value window (the
        offset), so windows shorter than ``value_days`` in training (short histories) and
        the full window when scoring are on one scale; the trees learn the correction.
        """
        train = self._windowed(train[train["future_value"].notna()])
        valid = self._windowed(valid[valid["future_value"].notna()])
        self.btyd_ = BtydFeatures(self.value_days).fit(pd.concat([train, valid]))
        train, valid = self.btyd_.transform(train), self.btyd_.transform(valid)
        self.input_features_ = [f for f in features if f not in BTYD_COLUMNS]
        self.features_ = [*self.input_features_, *BTYD_OUTPUTS]
        self.scales_: dict[str, float] = {}
        self.booster_ = self._fit_head(train, valid, "future_value", "tweedie")
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        self.counts_ = None
        if "future_purchase_days" in train.columns:
            self.counts_ = self._fit_head(train, valid, "future_purchase_days", "poisson")
        self.negative_share_ = float((train["future_value"] < 0).mean())
        segments = train["rfm_segment"].astype(object)
        self.rfm_values_ = train["future_value"].groupby(segments).mean()
        self.mean_value_ = float(train["future_value"].mean())
        logger.info(
            "value: %d rows (%.2f%% negative targets clipped at 0), %d rounds",
            len(train),
            100 * self.negative_share_,
            self.best_iteration_,
        )
        return self

    def _windowed(self, frame: pd.DataFrame) -> pd.DataFrame:
        # The value label's window is the row's BTYD window (not the churn one).
        if "value_window_days" in frame.columns:
            return frame.assign(**{WINDOW: frame["value_window_days"].to_numpy(dtype=float)})
        return frame.drop(columns=[WINDOW], errors="ignore")

    def _fit_head(
        self, train: pd.DataFrame, valid: pd.DataFrame, label: str, objective: str
    ) -> lgb.Booster:
        params = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "verbose": -1,
        }
        if objective == "tweedie":
            params["tweedie_variance_power"] = self.tweedie_variance_power
        if self.n_jobs is not None:
            params["num_threads"] = self.n_jobs
        y = train[label].astype(float).clip(lower=0)
        # The offset's scale: label per expected purchase over the training rows (spend
        # per purchase day for value, 1 for a well-fitted BG/NBD), so boosting starts near.
        scale = float(np.log(max(y.sum(), 1e-9) / np.exp(offset(train)).sum()))
        self.scales_[label] = scale
        train_set = lgb.Dataset(
            model_inputs(train, self.features_), y, init_score=offset(train) + scale
        )
        valid_set = lgb.Dataset(
            model_inputs(valid, self.features_),
            valid[label].astype(float).clip(lower=0),
            init_score=offset(valid) + scale,
            reference=train_set,
        )
        return lgb.train(
            params,
            train_set,
            num_boost_round=self.n_estimators,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )

    def with_btyd(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the BG/NBD columns for the value window (or the rows' own)."""
        return self.btyd_.transform(self._windowed(frame))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``predicted_value`` (expected spend over the value window, never negative) and
        ``expected_purchases`` (purchase days in it)."""
        rows = self.with_btyd(frame)
        x = model_inputs(rows, self.features_)
        threads = lgb_threads(self.n_jobs)
        base = offset(rows)
        raw = self.booster_.predict(
            x, num_iteration=self.best_iteration_, num_threads=threads, raw_score=True
        )
        value = np.exp(raw + base + self.scales_["future_value"])
        # No order yet: the model never saw such a customer; what they spent next did.
        never = ~(rows["purchase_days_lifetime"].fillna(0).to_numpy(dtype=float) > 0)
        if getattr(self, "cold_start_values_", None) and never.any():
            value = np.where(never, self.cold_start_value(rows), value)
        out = pd.DataFrame({"predicted_value": value}, index=frame.index)
        if self.counts_ is not None:
            raw = self.counts_.predict(x, num_threads=threads, raw_score=True)
            out["expected_purchases"] = np.exp(raw + base + self.scales_["future_purchase_days"])
        return out

    def cold_start_value(self, frame: pd.DataFrame) -> np.ndarray:
        """Spend over the window of customers without an order, by their signup age
        (``tenure_days``; unknown counts as new): the mean of such customers at the
        training cutoffs (kizuna.training.labels.never_buyer_value)."""
        edges = np.array(sorted(self.cold_start_values_), dtype=float)
        means = np.array([self.cold_start_values_[e] for e in sorted(self.cold_start_values_)])
        age = np.nan_to_num(frame["tenure_days"].to_numpy(dtype=float), nan=0.0)
        group = np.clip(np.searchsorted(edges, age, side="right") - 1, 0, len(edges) - 1)
        return means[group]

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP values of each feature (log scale of the tweedie mean, relative to
        the BG/NBD offset)."""
        x = model_inputs(self.with_btyd(frame), self.features_)
        values = self.booster_.predict(
            x,
            num_iteration=self.best_iteration_,
            pred_contrib=True,
            num_threads=lgb_threads(self.n_jobs),
        )
        return pd.DataFrame(values[:, :-1], columns=self.features_, index=frame.index)

    def baseline_predictions(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """The baselines' ``predicted_value`` per row (see the module docstring); ``rfm``
        falls back to the overall training mean for a segment training never saw."""
        rfm = frame["rfm_segment"].astype(object).map(self.rfm_values_).astype(float)
        outputs = {
            "last_period_spend": last_period_spend(frame, self.value_days),
            "rfm": rfm.fillna(self.mean_value_).to_numpy(),
        }
        return {
            name: pd.DataFrame({"predicted_value": value}, index=frame.index)
            for name, value in outputs.items()
        }


def evaluate(model: ValueModel, test: pd.DataFrame) -> pd.DataFrame:
    """Spearman, Gini, MAE and revenue share of the predicted top 20% against the net
    future value, on the test rows that have one; one row for the model (``kizuna``) and
    one per baseline."""
    test = test[test["future_value"].notna()]
    actual = test["future_value"].to_numpy(dtype=float)
    scorers = {MODEL_ROW: model.predict(test), **model.baseline_predictions(test)}
    rows = {name: value_report(actual, out["predicted_value"]) for name, out in scorers.items()}
    ours = scorers[MODEL_ROW]
    if "expected_purchases" in ours.columns and "future_purchase_days" in test.columns:
        counts = test["future_purchase_days"].to_numpy(dtype=float)
        rows[MODEL_ROW] |= count_report(counts, ours["expected_purchases"])
    return pd.DataFrame(rows).T
