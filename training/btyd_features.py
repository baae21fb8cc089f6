"""BTYD outputs as model features: BG/NBD fitted at each cutoff, read for a row's window.

BG/NBD extrapolates well but sees only frequency, recency and age; LightGBM sees every
catalog feature but cannot extrapolate past the label windows it was trained on. Stacking
gives each what it lacks. At every cutoff of a frame BG/NBD is fitted on that cutoff's
customers alone (all who bought by it: the labels' population), from three catalog
features — ``purchase_days_lifetime`` (frequency + 1), ``days_since_first_order`` (age)
and ``days_since_last_order`` (age minus recency) — so serving computes the same columns from
the same FeatureService. Its outputs for the row's window (``label_window_days``: the
label's own, possibly truncated, window in training; the model's horizon when scoring)
join the row:

* ``bgnbd_p_alive``: P(still active at the cutoff);
* ``bgnbd_p_buy_window``: P(at least one purchase in the window);
* ``bgnbd_expected_purchases_window``: expected purchase days in the window.

A fitted :class:`BtydFeatures` keeps the parameters of its latest cutoff and uses them for
cutoffs it did not see (serving, a backtest's scoring cutoff): population parameters move
slowly, and refitting on a handful of rescored customers would be noise. Everything a row
gets uses data at or before its cutoff only.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd

from kizuna.training.btyd import BtydBaseline, BtydError

log = logging.getLogger(__name__)

#: The label window of a row (days); a feature, so trees can tell short windows apart.
WINDOW = "label_window_days"
#: The catalog features the BTYD summary is derived from.
SUMMARY_INPUTS = ("purchase_days_lifetime", "days_since_first_order", "days_since_last_order")
#: The columns :meth:`BtydFeatures.transform` adds.
OUTPUTS = ("bgnbd_p_alive", "bgnbd_p_buy_window", "bgnbd_expected_purchases_window")
COLUMNS = (WINDOW, *OUTPUTS)
# BG/NBD on fewer customers than this is noise; the latest fitted parameters are used.
MIN_CUSTOMERS = 200
# Periods of a week: the published BTYD scale (the fit is the same up to alpha's scale).
PERIOD_DAYS = 7.0


def summary_of(frame: pd.DataFrame) -> pd.DataFrame:
    """lifetimes' summary (frequency, recency, T in weeks) from the catalog features.

    Rows without an order get NaN (no BTYD reading); recency never exceeds T.
    """
    missing = [c for c in SUMMARY_INPUTS if c not in frame.columns]
    if missing:
        raise BtydError(
            f"the frame lacks {', '.join(missing)}; rebuild the snapshots with this version "
            "(kizuna features build, kizuna features apply)"
        )
    days = frame["purchase_days_lifetime"].to_numpy(dtype=float)
    age = np.floor(frame["days_since_first_order"].to_numpy(dtype=float))
    since_last = np.floor(frame["days_since_last_order"].to_numpy(dtype=float))
    bought = (days >= 1) & np.isfinite(age) & np.isfinite(since_last)
    recency = np.clip(age - since_last, 0, None)
    return pd.DataFrame(
        {
            "frequency": np.where(bought, np.maximum(days - 1, 0), np.nan),
            "recency": np.where(bought, np.minimum(recency, age) / PERIOD_DAYS, np.nan),
            "T": np.where(bought, age / PERIOD_DAYS, np.nan),
        },
        index=frame.index,
    )


class BtydFeatures:
    """BG/NBD fitted per cutoff; adds :data:`COLUMNS` to a frame.

    Args:
        window_days: the window when a frame has no ``label_window_days`` column (scoring).
        penalizer: BG/NBD's L2 penalty (a little keeps early, small cutoffs finite).
    """

    def __init__(self, window_days: float, penalizer: float = 0.001) -> None:
        self.window_days = window_days
        self.penalizer = penalizer

    def fit(self, frame: pd.DataFrame) -> BtydFeatures:
        """Fit BG/NBD at every cutoff (``event_timestamp``) of ``frame``."""
        self.params_: dict[datetime, BtydBaseline] = {}
        for cutoff, rows in frame.groupby("event_timestamp", sort=True):
            self._fit_one(pd.Timestamp(cutoff).to_pydatetime(), rows)
        if not self.params_:
            raise BtydError(
                f"BG/NBD could not be fitted at any cutoff (each needs {MIN_CUSTOMERS}+ buyers)"
            )
        self.latest_ = self.params_[max(self.params_)]
        return self

    def _fit_one(self, cutoff: datetime, rows: pd.DataFrame) -> None:
        summary = summary_of(rows).dropna()
        if len(summary) < MIN_CUSTOMERS:
            return
        try:
            self.params_[cutoff] = BtydBaseline(
                "bgnbd", penalizer=self.penalizer, fit_spend=False
            ).fit(summary)
        except BtydError as exc:
            log.warning("BG/NBD features: no fit at %s (%s); using another cutoff's", cutoff, exc)

    def _model_at(self, cutoff: datetime) -> BtydBaseline:
        if cutoff in self.params_:
            return self.params_[cutoff]
        earlier = [c for c in self.params_ if c <= cutoff]
        # A cutoff before every fit (rare: too few buyers early on) takes the first fit:
        # its parameters come from later data, but only as population constants.
        return self.params_[max(earlier)] if earlier else self.params_[min(self.params_)]

    def _by_cutoff(self, frame: pd.DataFrame, summary: pd.DataFrame):
        """(rows, BG/NBD) per cutoff of ``frame``: a boolean mask of the rows that have a
        reading (an order) at that cutoff, and the fit they are read with. Rows without a
        moment (a model signature's example) take the latest fit."""
        known = summary["frequency"].notna().to_numpy()
        if "event_timestamp" in frame.columns:
            cutoffs = pd.to_datetime(frame["event_timestamp"], utc=True)
        else:
            cutoffs = pd.Series(pd.Timestamp(max(self.params_)), index=frame.index)
        for cutoff in cutoffs[known].unique():
            rows = known & (cutoffs == cutoff).to_numpy()
            yield rows, self._model_at(pd.Timestamp(cutoff).to_pydatetime())

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with :data:`COLUMNS` (a copy); the window from ``label_window_days``
        where present, else ``window_days``."""
        out = frame.copy()
        if WINDOW not in out.columns:
            out[WINDOW] = float(self.window_days)
        window = out[WINDOW].to_numpy(dtype=float)
        summary = summary_of(out)
        values = np.full((len(out), len(OUTPUTS)), np.nan)
        for rows, model in self._by_cutoff(out, summary):
            for w in np.unique(window[rows]):
                at = rows & (window == w)
                sub, t = summary[at], w / PERIOD_DAYS
                values[at, 0] = model.p_alive(sub)
                values[at, 1] = model.p_buy_within(sub, t)
                values[at, 2] = model.expected_purchases(sub, t)
        for j, name in enumerate(OUTPUTS):
            out[name] = values[:, j]
        return out

    def p_buy(self, frame: pd.DataFrame, days: tuple[float, ...]) -> np.ndarray:
        """P(at least one purchase within each of ``days``) per row (rows x days), from
        the BG/NBD of the row's cutoff; NaN for rows without an order."""
        summary = summary_of(frame)
        out = np.full((len(frame), len(days)), np.nan)
        for rows, model in self._by_cutoff(frame, summary):
            for j, d in enumerate(days):
                out[rows, j] = model.p_buy_within(summary[rows], d / PERIOD_DAYS)
        return out

    @property
    def params(self) -> dict[str, float]:
        """The latest cutoff's BG/NBD parameters (logged with the model)."""
        return dict(self.latest_.params_)
