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
from kizuna.training.evaluate import value_report

logger = logging.getLogger(__name__)

#: The spend windows (days) of the purchase features, ``spend_<w>d``.
SPEND_WINDOWS = (30, 90, 180, 365)
BASELINES = ("last_period_spend", "rfm")


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
        """Train on the labelled training rows; stop early on the validation cutoff's.

        Rows without ``future_value`` (their window runs past the data) are left out.
        """
        self.features_ = list(features)
        train = train[train["future_value"].notna()]
        valid = valid[valid["future_value"].notna()]
        params = {
            "objective": "tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "seed": self.seed,
            "verbose": -1,
        }
        if self.n_jobs is not None:
            params["num_threads"] = self.n_jobs
        train_set = lgb.Dataset(
            model_inputs(train, self.features_), train["future_value"].clip(lower=0)
        )
        valid_set = lgb.Dataset(
            model_inputs(valid, self.features_),
            valid["future_value"].clip(lower=0),
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

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``predicted_value``: expected spend over the label window, never negative."""
        x = model_inputs(frame, self.features_)
        value = self.booster_.predict(
            x, num_iteration=self.best_iteration_, num_threads=lgb_threads(self.n_jobs)
        )
        return pd.DataFrame({"predicted_value": value}, index=frame.index)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP values of each feature (log scale of the tweedie mean)."""
        x = model_inputs(frame, self.features_)
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
    return pd.DataFrame(
        {name: value_report(actual, out["predicted_value"]) for name, out in scorers.items()}
    ).T
