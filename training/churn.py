"""Churn risk: LightGBM binary with early stopping and calibration on a later cutoff.

The model follows scikit-learn's estimator contract: ``__init__`` stores parameters,
``fit`` sets trailing-underscore attributes and returns ``self``. Both early stopping and
the isotonic calibration use the validation cutoff, never the training rows, so the
probabilities are honest on data the trees did not see.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

RISK_BANDS = ("low", "medium", "high")


def rfm_churn_score(frame: pd.DataFrame) -> np.ndarray:
    """The RFM heuristic baseline: lower recency, frequency and value scores mean more risk.

    Uses the catalog's 1-5 quintile scores; a ranking, not a probability.
    """
    r = frame["rfm_recency_score"].to_numpy(dtype=float)
    f = frame["rfm_frequency_score"].to_numpy(dtype=float)
    m = frame["rfm_monetary_score"].to_numpy(dtype=float)
    return 3 * (5 - r) + 2 * (5 - f) + (5 - m)


def model_inputs(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The columns a model reads, text as pandas categories (LightGBM splits on them)."""
    x = frame[features].copy()
    for name in features:
        if x[name].dtype == object or pd.api.types.is_string_dtype(x[name].dtype):
            x[name] = x[name].astype("category")
        elif pd.api.types.is_bool_dtype(x[name].dtype):
            x[name] = x[name].astype(float)
    return x


class ChurnModel:
    """Calibrated churn probability with risk bands.

    Args:
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate, num_leaves, min_child_samples: LightGBM's own.
        band_edges: probabilities separating low / medium / high risk.
        seed: for LightGBM's sampling.
    """

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        band_edges: tuple[float, float] = (0.3, 0.6),
        seed: int = 7,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.band_edges = band_edges
        self.seed = seed

    def fit(self, x_train: pd.DataFrame, y_train, x_valid: pd.DataFrame, y_valid) -> ChurnModel:
        """Train on the training cutoffs; stop early and calibrate on the validation one."""
        self.features_ = list(x_train.columns)
        self.booster_ = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.seed,
            verbose=-1,
        )
        self.booster_.fit(
            x_train,
            np.asarray(y_train, dtype=int),
            eval_X=x_valid,
            eval_y=np.asarray(y_valid, dtype=int),
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        raw = self.booster_.predict_proba(x_valid)[:, 1]
        self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.calibrator_.fit(raw, np.asarray(y_valid, dtype=float))
        self.best_iteration_ = int(self.booster_.best_iteration_ or self.n_estimators)
        return self

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn) per row."""
        raw = self.booster_.predict_proba(x[self.features_])[:, 1]
        return self.calibrator_.predict(raw)

    def risk_band(self, probability: np.ndarray) -> np.ndarray:
        """low / medium / high by the band edges."""
        return np.array(RISK_BANDS, dtype=object)[np.digitize(probability, self.band_edges)]
