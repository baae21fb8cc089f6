"""Repeat purchases in a window: LightGBM stacked on BTYD, trained at many cutoffs.

A BTYD model (:mod:`kizuna.training.btyd`) extrapolates well but sees only frequency,
recency and age; LightGBM sees every catalog feature but, trained naively, does not know
how long the window it forecasts is. Stacking gives each what it lacks:

* at every training cutoff ``t`` BG/NBD (optionally Pareto/NBD too) is fitted on the data
  up to ``t`` alone, and their outputs for the window (t, label_end] (P(alive), expected purchases,
  P(buy)) join the summary and the catalog features of the snapshot at ``t``
  (:func:`kizuna.features.compute.compute_snapshots`);
* the count model is a LightGBM Poisson regression whose starting point (``init_score``)
  is the log of BG/NBD's expected purchases in the row's own window, so the trees learn a
  multiplicative correction to BG/NBD and the window length is carried by the offset,
  whatever the window (label windows of the training cutoffs are shorter than the
  forecast horizon);
* the binary "buys again" model is :class:`kizuna.training.churn.ChurnModel` (churned = no
  purchase in the window), with the window's BG/NBD P(buy) among its features.

Purchases are counted as lifetimes counts them: distinct purchase days, returns excluded.
Every feature of a row uses data at or before its cutoff; its label only the window after.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd

from kizuna.features.compute import Tables, as_utc, compute_snapshots
from kizuna.training.base import model_inputs
from kizuna.training.btyd import BtydBaseline, BtydError, rfm_summary
from kizuna.training.churn import ChurnModel

log = logging.getLogger(__name__)

DAY = pd.Timedelta(days=1)
COUNT_LABEL = "purchases"
# Floor of the BG/NBD expectation used as an offset, so log() stays finite.
MIN_EXPECTED = 1e-4
# The penalty a BTYD fit is retried with when its outputs overflow.
RETRY_PENALIZER = 1e-3

#: BTYD columns every row gets (the summary and BG/NBD's outputs for the row's window).
BTYD_FEATURES = [
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "bgnbd_p_alive",
    "bgnbd_expected_purchases",
    "bgnbd_p_buy_within",
]
#: Pareto/NBD's outputs, in the frame when ``models`` includes it. Not in ``FEATURES``: on
#: CDNOW they lowered the sample's holdout AUC (0.776 -> 0.759) and did not lower MAE.
PARETO_FEATURES = ["pareto_nbd_p_alive", "pareto_nbd_expected_purchases", "pareto_nbd_p_buy_within"]
#: Catalog features of ``customer_purchases`` and ``customer_profile`` that apply to a
#: purchase log (no absolute timestamps: they would not carry over to a later cutoff).
CATALOG_FEATURES = [
    "days_since_last_order",
    "order_count_30d",
    "order_count_90d",
    "order_count_180d",
    "order_count_lifetime",
    "spend_30d",
    "spend_90d",
    "spend_180d",
    "spend_lifetime",
    "tenure_days",
    "avg_order_value",
    "gap_mean_days",
    "gap_median_days",
    "gap_std_days",
    "last_gap_days",
    "overdue_index",
    "order_trend_90d",
    "spend_trend_90d",
    "rfm_recency_score",
    "rfm_frequency_score",
    "rfm_monetary_score",
]
#: The window's length in periods is a feature too: the offset carries its first-order
#: effect, the trees what is left (longer windows see more of the slow decline).
FEATURES = [*BTYD_FEATURES, "recency_share", "window_periods", *CATALOG_FEATURES]


def purchase_days_between(
    con: duckdb.DuckDBPyConnection, tables: Tables, start: datetime, end: datetime
) -> pd.Series:
    """Distinct purchase days in (start, end] per customer (returns excluded); customers
    without any are absent."""
    return (
        con.execute(
            f"""SELECT customer_id, count(DISTINCT CAST(timezone('UTC', ordered_at) AS DATE))
                       AS purchases
                FROM {tables.orders}
                WHERE NOT coalesce(is_return, false)
                  AND ordered_at > $start AND ordered_at <= $end
                GROUP BY customer_id""",
            {"start": as_utc(start), "end": as_utc(end)},
        )
        .df()
        .set_index("customer_id")["purchases"]
        .astype("int64")
    )


def cutoff_frame(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    cutoff: datetime,
    window_end: datetime,
    period_days: int = 7,
    penalizer: float = 0.0,
    models: Sequence[str] = ("bgnbd",),
) -> pd.DataFrame:
    """Features at ``cutoff`` and purchases in (cutoff, window_end] of every customer who
    bought by ``cutoff``.

    Each of ``models`` (``"bgnbd"``, ``"pareto_nbd"``) is fitted here on the summary at
    ``cutoff``; its outputs, columns prefixed with the model's name, are for a horizon of
    ``window_end - cutoff``. The label columns are ``purchases`` (distinct days) and
    ``churned`` (no purchase); they read the window, so a caller forecasting beyond the
    data must ignore them.
    """
    cutoff, window_end = as_utc(cutoff), as_utc(window_end)
    summary = rfm_summary(con, tables, cutoff, period_days=period_days)
    horizon = (window_end - cutoff) / DAY / period_days
    frame = summary
    for model in models:
        outputs = BtydBaseline(model, penalizer=penalizer, fit_spend=False).fit(summary)
        outputs = outputs.predict(summary, horizon)
        if not np.isfinite(outputs.to_numpy()).all():
            # Early cutoffs can put Pareto/NBD's (s, beta) far out on the ridge where only
            # their ratio is identified (CDNOW at week 13: s=105, beta=1761); lifetimes'
            # P(alive) then overflows for customers who bought on the last day. A small
            # penalty pulls the pair back without moving the fit's drop-out rate much.
            retry = BtydBaseline(model, penalizer=max(penalizer, RETRY_PENALIZER), fit_spend=False)
            outputs = retry.fit(summary).predict(summary, horizon)
        frame = frame.join(outputs.add_prefix(f"{model}_"))
    frame["recency_share"] = frame["recency"] / frame["T"].where(frame["T"] > 0)
    frame["window_periods"] = horizon
    snapshot = compute_snapshots(con, tables, [cutoff])
    catalog = snapshot["customer_purchases"].merge(
        snapshot["customer_profile"], on=["customer_id", "event_timestamp"]
    )
    frame = frame.join(catalog.set_index("customer_id"), how="left")
    frame["event_timestamp"] = cutoff
    bought = purchase_days_between(con, tables, cutoff, window_end)
    frame[COUNT_LABEL] = bought.reindex(frame.index).fillna(0).astype("int64")
    frame["churned"] = frame[COUNT_LABEL] == 0
    return frame.reset_index()


def training_frame(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    cutoffs: Sequence[datetime],
    label_end: datetime,
    period_days: int = 7,
    penalizer: float = 0.0,
    skip_unfitted: bool = False,
) -> pd.DataFrame:
    """:func:`cutoff_frame` of every cutoff, all labelled on windows ending at
    ``label_end``, stacked (one row per customer and cutoff).

    Args:
        skip_unfitted: leave out, with a warning, the cutoffs where BG/NBD or Pareto/NBD does not
            converge (on data with almost no visible drop-out its MLE sits on the edge of
            the parameter space); otherwise their :class:`BtydError` propagates.

    Raises:
        ValueError: if a cutoff is at or after ``label_end``, or every cutoff was skipped.
        BtydError: if BG/NBD does not converge at a cutoff and ``skip_unfitted`` is False.
    """
    label_end = as_utc(label_end)
    late = [c for c in cutoffs if as_utc(c) >= label_end]
    if late:
        raise ValueError(f"cutoffs at or after the label end {label_end:%Y-%m-%d}: {late}")
    parts = []
    for cutoff in cutoffs:
        try:
            parts.append(cutoff_frame(con, tables, cutoff, label_end, period_days, penalizer))
        except BtydError as error:
            if not skip_unfitted:
                raise
            log.warning("skipping the cutoff %s: %s", as_utc(cutoff).isoformat(), error)
    if not parts:
        raise ValueError("BG/NBD converged at none of the cutoffs; no training rows")
    return pd.concat(parts, ignore_index=True)


class PurchaseCountModel:
    """Expected purchases in a window: LightGBM Poisson on top of BG/NBD's expectation.

    Args:
        n_estimators: most boosting rounds; early stopping usually ends sooner.
        learning_rate, num_leaves, min_child_samples: LightGBM's own.
        seed: for LightGBM's sampling.
        n_jobs: LightGBM threads (None: its default).
    """

    def __init__(
        self,
        n_estimators: int = 2000,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 200,
        seed: int = 7,
        n_jobs: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.n_jobs = n_jobs

    @staticmethod
    def offset(frame: pd.DataFrame) -> np.ndarray:
        """log of BG/NBD's expected purchases in each row's window."""
        expected = frame["bgnbd_expected_purchases"].to_numpy(dtype=float)
        return np.log(np.maximum(expected, MIN_EXPECTED))

    def fit(
        self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]
    ) -> PurchaseCountModel:
        """Train on ``train``, stop early on ``valid``; both need ``purchases``."""
        self.features_ = list(features)
        self.booster_ = lgb.LGBMRegressor(
            objective="poisson",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=self.seed,
            n_jobs=self.n_jobs,
            verbose=-1,
        )
        self.booster_.fit(
            model_inputs(train, self.features_),
            train[COUNT_LABEL].to_numpy(dtype=float),
            init_score=self.offset(train),
            eval_X=model_inputs(valid, self.features_),
            eval_y=valid[COUNT_LABEL].to_numpy(dtype=float),
            eval_init_score=[self.offset(valid)],
            callbacks=[lgb.early_stopping(100, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration_ or self.n_estimators)
        log.info("purchase counts: %d rounds", self.best_iteration_)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Expected purchase days in each row's window."""
        raw = self.booster_.predict(model_inputs(frame, self.features_), raw_score=True)
        return np.exp(raw + self.offset(frame))


def customer_split(
    frame: pd.DataFrame, valid_share: float = 0.2, seed: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation rows, split by customer (all cutoffs of a customer on one
    side). Every training label window ends on the same day, so a split in time would only
    shorten the windows; splitting customers keeps one customer's overlapping windows from
    validating each other."""
    customers = np.sort(frame["customer_id"].unique())
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(customers, size=round(valid_share * len(customers)), replace=False))
    in_valid = frame["customer_id"].isin(chosen)
    return frame[~in_valid], frame[in_valid]


class RepeatForecaster:
    """The purchase-count and buys-again models, trained together on one training frame.

    Args:
        valid_share: share of customers held out for early stopping and calibration.
        seed: for the split and LightGBM.
        n_jobs: LightGBM threads.
    """

    def __init__(self, valid_share: float = 0.2, seed: int = 7, n_jobs: int | None = None):
        self.valid_share = valid_share
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, frame: pd.DataFrame, features: list[str] | None = None) -> RepeatForecaster:
        """Fit both models on a :func:`training_frame`."""
        self.features_ = list(features or FEATURES)
        train, valid = customer_split(frame, self.valid_share, self.seed)
        self.counts_ = PurchaseCountModel(seed=self.seed, n_jobs=self.n_jobs).fit(
            train, valid, self.features_
        )
        self.churn_ = ChurnModel(seed=self.seed, n_jobs=self.n_jobs).fit(
            train, valid, self.features_
        )
        return self

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``expected_purchases``, ``churn_probability`` and ``p_buy`` (1 - churn) per row
        of a :func:`cutoff_frame`."""
        # Isotonic calibration is a step function: on small data whole groups (most
        # one-time buyers) share one probability. Within a step the trees' raw score breaks
        # the tie (a shift below 1e-6), so rankings keep the trees' order.
        raw = self.churn_.booster_.predict_proba(model_inputs(frame, self.churn_.features_))[:, 1]
        churn = np.clip(self.churn_.predict_proba(frame) + 1e-6 * (raw - 0.5), 0.0, 1.0)
        return pd.DataFrame(
            {
                "expected_purchases": self.counts_.predict(frame),
                "churn_probability": churn,
                "p_buy": 1.0 - churn,
            },
            index=frame.index,
        )


__all__ = [
    "FEATURES",
    "PARETO_FEATURES",
    "PurchaseCountModel",
    "RepeatForecaster",
    "customer_split",
    "cutoff_frame",
    "purchase_days_between",
    "training_frame",
]
