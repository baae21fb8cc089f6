"""Churn risk: LightGBM binary with early stopping and calibration on a later cutoff.

Both early stopping and the isotonic calibration use the validation cutoff, never the
training rows, so the probabilities are honest on data the trees did not see. The label
is ``churned``: no purchase in (t, t + H] (kizuna.training.labels).
"""

from __future__ import annotations

import logging
from typing import ClassVar

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from kizuna.training.base import MODEL_ROW, lgb_matrix, lgb_threads, model_inputs
from kizuna.training.btyd_features import COLUMNS as BTYD_COLUMNS
from kizuna.training.btyd_features import BtydFeatures
from kizuna.training.evaluate import classification_report

log = logging.getLogger(__name__)

RISK_BANDS = ("low", "medium", "high")
LABEL = "churned"


def rfm_churn_score(frame: pd.DataFrame) -> np.ndarray:
    """The RFM heuristic: lower recency, frequency and value scores mean more risk.

    Uses the catalog's 1-5 quintile scores; a ranking from 0 (best) to 33 (worst).
    """
    r = frame["rfm_recency_score"].to_numpy(dtype=float)
    f = frame["rfm_frequency_score"].to_numpy(dtype=float)
    m = frame["rfm_monetary_score"].to_numpy(dtype=float)
    return 3 * (5 - r) + 2 * (5 - f) + (5 - m)


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose churn window has closed (the label is known)."""
    return frame[frame[LABEL].notna()]


class ChurnModel:
    """Calibrated churn probability with risk bands.

    Args:
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate, num_leaves, min_child_samples: LightGBM's own.
        band_edges: probabilities separating low / medium / high risk.
        seed: for LightGBM's sampling.
        n_jobs: LightGBM threads (None: all cores, slow when they are shared).
    """

    name: ClassVar[str] = "churn"
    service: ClassVar[str] = "churn_v1"
    primary_metric: ClassVar[str] = "auc"
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        band_edges: tuple[float, float] = (0.3, 0.6),
        window_days: float = 90.0,
        seed: int = 7,
        n_jobs: int | None = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.band_edges = band_edges
        self.window_days = window_days
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> ChurnModel:
        """Train on the training cutoffs; stop early and calibrate on the validation ones.

        Also fits the RFM baseline's churn rate per RFM score on the same training rows,
        so :func:`evaluate` can compare probabilities with probabilities.
        """
        train, valid = labelled(train), labelled(valid)
        # BG/NBD's reading of each row's own window: the horizon carried past the label
        # windows training saw (short histories train on truncated ones).
        self.btyd_ = BtydFeatures(self.window_days).fit(pd.concat([train, valid]))
        train, valid = self.btyd_.transform(train), self.btyd_.transform(valid)
        self.input_features_ = [f for f in features if f not in BTYD_COLUMNS]
        self.features_ = [*self.input_features_, *BTYD_COLUMNS]
        y_train = train[LABEL].astype(int).to_numpy()
        y_valid = valid[LABEL].astype(int).to_numpy()
        self.booster_ = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.seed,
            n_jobs=self.n_jobs,
            verbose=-1,
        )
        self.booster_.fit(
            model_inputs(train, self.features_),
            y_train,
            eval_X=model_inputs(valid, self.features_),
            eval_y=y_valid,
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        raw = self.booster_.predict_proba(model_inputs(valid, self.features_))[:, 1]
        self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.calibrator_.fit(raw, y_valid.astype(float))
        self.best_iteration_ = int(self.booster_.best_iteration_ or self.n_estimators)
        self.rfm_rates_ = pd.Series(y_train).groupby(rfm_churn_score(train)).mean().to_dict()
        self.base_rate_ = float(y_train.mean())
        log.info("churn: %d rounds, train rate %.3f", self.best_iteration_, self.base_rate_)
        return self

    def with_btyd(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the BG/NBD columns for the model's window (or the rows' own)."""
        return self.btyd_.transform(frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn) per row."""
        x = model_inputs(self.with_btyd(frame), self.features_)
        raw = self.booster_.predict_proba(x, num_threads=lgb_threads(self.n_jobs))[:, 1]
        return self.calibrator_.predict(raw)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``churn_probability`` and ``risk_band`` per row."""
        p = self.predict_proba(frame)
        return pd.DataFrame(
            {"churn_probability": p, "risk_band": self.risk_band(p)}, index=frame.index
        )

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP values of each feature (LightGBM's ``pred_contrib``, log-odds of
        the uncalibrated score); the reasons behind a risk."""
        values = self.contribution_values(self.matrix(frame))
        return pd.DataFrame(values, columns=self.features_, index=frame.index)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows as the booster's float matrix (:func:`lgb_matrix`): built once, rows
        of it can be explained later without typing a frame again."""
        x = model_inputs(self.with_btyd(frame), self.features_)
        return lgb_matrix(x, self.booster_.booster_.pandas_categorical)

    def contribution_values(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`contributions` of rows of :meth:`matrix`, as an array (rows x features)."""
        values = self.booster_.booster_.predict(
            matrix,
            pred_contrib=True,
            num_iteration=self.booster_.best_iteration_ or None,
            num_threads=lgb_threads(self.n_jobs),
        )
        return values[:, :-1]

    def risk_band(self, probability: np.ndarray) -> np.ndarray:
        """low / medium / high by the band edges."""
        return np.array(RISK_BANDS, dtype=object)[np.digitize(probability, self.band_edges)]

    def rfm_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """The RFM baseline as a probability: the training churn rate of the row's score."""
        score = pd.Series(rfm_churn_score(frame))
        return score.map(self.rfm_rates_).fillna(self.base_rate_).to_numpy()


def evaluate(model: ChurnModel, test: pd.DataFrame) -> pd.DataFrame:
    """The model and the RFM baseline on the same held-out rows, one row per scorer."""
    test = labelled(test)
    y = test[LABEL].astype(int).to_numpy()
    rows = {
        MODEL_ROW: classification_report(y, model.predict_proba(test)),
        "rfm": classification_report(y, model.rfm_probability(test)),
    }
    return pd.DataFrame.from_dict(rows, orient="index")
