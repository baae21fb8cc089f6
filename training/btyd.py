"""Buy 'til you die: the classic purchase-count baselines, fitted from the lake.

BG/NBD (Fader, Hardie & Lee 2005), Pareto/NBD (Schmittlein, Morrison & Colombo 1987) and
the Gamma-Gamma spend model (Fader, Hardie & Lee 2005b), through ``lifetimes``. They are
the reference every Kizuna purchase, churn and value model is scored against, and their
outputs are features of those models.

:func:`rfm_summary` computes, in DuckDB, the per-customer summary the models read, with
the conventions of ``lifetimes.utils.summary_data_from_transaction_data``:

* one purchase per day: orders (returns excluded) are rolled up to purchase days, and the
  first purchase day does not count, so ``frequency`` is the number of *repeat* purchase
  days;
* ``recency`` is the time from the first to the last purchase day and ``T`` from the first
  purchase day to the end of observation, both in periods of ``period_days`` days measured
  from whole days (``period_days=7`` is lifetimes' ``freq="D", freq_multiplier=7``, the
  weeks of the published CDNOW figures);
* ``monetary_value`` is the mean spend of the repeat purchase days (0 without any).

The observation ends on the day of the cutoff, or on the day before when the cutoff is
exactly midnight UTC: a snapshot at 00:00 sees the previous day's orders and none of its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from scipy.special import roots_jacobi

from kizuna.features.compute import Tables, as_utc

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")
COUNT_MODELS = ("bgnbd", "pareto_nbd")


class BtydError(ValueError):
    """A BTYD model cannot be fitted or used as asked; the message says why."""


def observation_day_sql(cutoff: datetime) -> str:
    """The last whole day a cutoff sees, as a DuckDB DATE literal expression."""
    moment = as_utc(cutoff)
    day = moment.date()
    if moment.hour == moment.minute == moment.second == moment.microsecond == 0:
        day = day.fromordinal(day.toordinal() - 1)
    return f"DATE '{day.isoformat()}'"


def rfm_summary(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    cutoff: datetime,
    period_days: int = 7,
) -> pd.DataFrame:
    """Frequency, recency, T and monetary value per customer who bought by ``cutoff``.

    Args:
        con: a DuckDB connection (UTC; :func:`kizuna.features.ingest.connect`).
        tables: where the lake's tables are; only ``orders`` is read.
        cutoff: orders at or before this moment count; naive means UTC.
        period_days: the length of one period of ``recency`` and ``T`` in days.

    Returns:
        One row per customer (index ``customer_id``, sorted) with ``frequency`` (int),
        ``recency``, ``T`` and ``monetary_value`` (floats), as lifetimes' summary.

    Raises:
        BtydError: if ``period_days`` is not positive.
    """
    if period_days <= 0:
        raise BtydError(f"period_days must be a positive number of days, got {period_days}")
    moment = as_utc(cutoff)
    frame = con.execute(
        f"""WITH purchase_days AS (
                SELECT customer_id, CAST(timezone('UTC', ordered_at) AS DATE) AS day,
                       sum(amount) AS spend
                FROM {tables.orders}
                WHERE NOT coalesce(is_return, false) AND ordered_at <= $cutoff
                GROUP BY ALL),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY day) AS nth
                FROM purchase_days)
            SELECT customer_id,
                   count(*) - 1 AS frequency,
                   date_diff('day', min(day), max(day)) / {period_days} AS recency,
                   date_diff('day', min(day), {observation_day_sql(moment)}) / {period_days}
                       AS "T",
                   coalesce(avg(spend) FILTER (nth > 1), 0) AS monetary_value
            FROM ranked GROUP BY customer_id ORDER BY customer_id""",
        {"cutoff": moment},
    ).df()
    frame["frequency"] = frame["frequency"].astype("int64")
    for name in ("recency", "T", "monetary_value"):
        frame[name] = frame[name].astype("float64")
    return frame.set_index("customer_id")


def _check_summary(summary: pd.DataFrame) -> None:
    missing = [c for c in SUMMARY_COLUMNS[:3] if c not in summary.columns]
    if missing:
        raise BtydError(f"the summary lacks {', '.join(missing)}; build it with rfm_summary")
    if summary.empty:
        raise BtydError("the summary is empty: no customer bought by the cutoff")


def bgnbd_expected_purchases(
    params: dict[str, float],
    frequency: np.ndarray,
    p_alive: np.ndarray,
    age: np.ndarray,
    t: float,
    nodes: int = 40,
) -> np.ndarray:
    """BG/NBD's conditional expected purchases in (T, T + t] by Gauss-Jacobi quadrature.

    Given alive at T, the rate is Gamma(r + x, alpha + T) and the drop-out probability
    Beta(a, b + x), independent; for fixed (rate, p) the expected count is
    (1 - exp(-rate p t)) / p. Integrating the rate out leaves one integral over p:
    E = P(alive) * E_p[(1 - ((alpha + T) / (alpha + T + p t)) ** (r + x)) / p],
    finite for every a, b > 0 (lifetimes' closed form needs a + b + x > 1).
    """
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    out = np.empty(len(frequency))
    for x in np.unique(frequency):
        rows = frequency == x
        # Beta(a, b + x) on p = (1 + u) / 2 is Jacobi weight (1 - u)^(b+x-1) (1 + u)^(a-1).
        u, w = roots_jacobi(nodes, b + x - 1, a - 1)
        p, w = (1 + u) / 2, w / w.sum()
        scale = (alpha + age[rows])[:, None]
        inner = (1 - (scale / (scale + p[None, :] * t)) ** (r + x)) / p[None, :]
        out[rows] = p_alive[rows] * (inner @ w)
    return out


class BtydBaseline:
    """A fitted BTYD baseline: a purchase-count model and a Gamma-Gamma spend model.

    ``bgnbd`` is lifetimes' ``BetaGeoFitter``, ``pareto_nbd`` its ``ParetoNBDFitter``.
    Every prediction takes a summary (:func:`rfm_summary`) of the customers to score, at
    the same cutoff and period as the one fitted on, and returns one value per row.

    Args:
        model: ``"bgnbd"`` or ``"pareto_nbd"``.
        penalizer: L2 penalty on the count model's log-parameters (lifetimes'
            ``penalizer_coef``); 0 reproduces the published maximum-likelihood figures.
        spend_penalizer: the same for Gamma-Gamma.
        fit_spend: fit Gamma-Gamma too (needs ``monetary_value`` and repeat buyers).
    """

    def __init__(
        self,
        model: str = "bgnbd",
        penalizer: float = 0.0,
        spend_penalizer: float = 0.0,
        fit_spend: bool = True,
    ) -> None:
        self.model = model
        self.penalizer = penalizer
        self.spend_penalizer = spend_penalizer
        self.fit_spend = fit_spend

    def fit(self, summary: pd.DataFrame) -> BtydBaseline:
        """Fit the count model on every row and Gamma-Gamma on repeat buyers with spend.

        Raises:
            BtydError: unknown model, a bad summary, or an optimiser that did not converge
                (try a penalizer such as 0.001).
        """
        if self.model not in COUNT_MODELS:
            raise BtydError(f"unknown model {self.model!r}; use one of {', '.join(COUNT_MODELS)}")
        _check_summary(summary)
        # Customers with the same (frequency, recency, T) share one likelihood term: fitting
        # the distinct triples with their counts as weights is the same maximum, and on
        # weekly periods several times faster (CDNOW: 23,570 customers, 8,685 triples).
        triples = summary.groupby(["frequency", "recency", "T"]).size().reset_index()
        penalizer = self.penalizer
        if self.model == "pareto_nbd":
            # lifetimes divides Pareto/NBD's weighted log-likelihood by the mean weight (not
            # the sum, as for BG/NBD); scaling the penalty alike keeps the same optimum.
            penalizer *= len(triples) / len(summary)
        fitter_class = BetaGeoFitter if self.model == "bgnbd" else ParetoNBDFitter
        counts = fitter_class(penalizer_coef=penalizer)
        try:
            # lifetimes prints the optimiser's result when it fails; the error says enough.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore", RuntimeWarning)
                counts.fit(
                    triples["frequency"], triples["recency"], triples["T"], weights=triples[0]
                )
        except ConvergenceError as error:
            raise BtydError(
                f"{self.model} did not converge on {len(summary)} customers "
                f"(penalizer={self.penalizer}); raise the penalizer, e.g. to 0.001"
            ) from error
        params = counts.params_
        if not np.all(np.isfinite(params.to_numpy(dtype=float))):
            raise BtydError(f"{self.model} fitted non-finite parameters {dict(params)}")
        self.counts_ = counts
        self.params_ = {k: float(v) for k, v in params.items()}
        self.spend_ = None
        if self.fit_spend:
            self.spend_ = self._fit_spend(summary)
        log.info("fitted %s on %d customers: %s", self.model, len(summary), self.params_)
        return self

    def _fit_spend(self, summary: pd.DataFrame) -> GammaGammaFitter:
        if "monetary_value" not in summary.columns:
            raise BtydError("the summary lacks monetary_value; Gamma-Gamma needs it")
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        if len(repeat) < 10:
            raise BtydError(f"Gamma-Gamma needs repeat buyers with spend; found {len(repeat)}")
        spend = GammaGammaFitter(penalizer_coef=self.spend_penalizer)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore", RuntimeWarning)
                spend.fit(repeat["frequency"], repeat["monetary_value"])
        except ConvergenceError as error:
            raise BtydError(
                f"Gamma-Gamma did not converge (spend_penalizer={self.spend_penalizer}); "
                "raise spend_penalizer"
            ) from error
        self.spend_params_ = {k: float(v) for k, v in spend.params_.items()}
        return spend

    def _columns(self, summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not hasattr(self, "counts_"):
            raise BtydError("fit the baseline before predicting")
        _check_summary(summary)
        return tuple(summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))

    def p_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(the customer is still active at the end of observation)."""
        x, t_x, age = self._columns(summary)
        return np.asarray(self.counts_.conditional_probability_alive(x, t_x, age), dtype=float)

    def expected_purchases(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """Expected repeat purchase days in the next ``t`` periods, (T, T + t].

        For BG/NBD with a + b + x < 1 (data with almost no visible drop-out) lifetimes'
        hypergeometric form is not finite; those rows use :func:`bgnbd_expected_purchases`.
        """
        x, t_x, age = self._columns(summary)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.asarray(
                self.counts_.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, age),
                dtype=float,
            )
        broken = ~np.isfinite(expected)
        if self.model == "bgnbd" and broken.any():
            expected[broken] = bgnbd_expected_purchases(
                self.params_, x[broken], self.p_alive(summary)[broken], age[broken], t
            )
        return expected

    def p_buy_within(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """P(at least one purchase in (T, T + t]).

        BG/NBD: lifetimes has no conditional purchase-count probability for it, but it has a
        closed form. A customer only drops out right after a purchase, so one who is alive
        at T and buys nothing in (T, T + t] stays alive; given alive at T the purchase rate
        is Gamma(r + x, alpha + T). Hence
        P = P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)).
        Pareto/NBD: 1 - lifetimes' ``conditional_probability_of_n_purchases_up_to_time(0)``.
        """
        x, t_x, age = self._columns(summary)
        if t <= 0:
            return np.zeros(len(x))
        if self.model == "bgnbd":
            r, alpha = self.params_["r"], self.params_["alpha"]
            none_if_alive = np.exp((r + x) * (np.log(alpha + age) - np.log(alpha + age + t)))
            return self.p_alive(summary) * (1.0 - none_if_alive)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            none = self.counts_.conditional_probability_of_n_purchases_up_to_time(0, t, x, t_x, age)
        return np.clip(1.0 - np.asarray(none, dtype=float), 0.0, 1.0)

    def expected_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """Gamma-Gamma's expected spend per purchase day (the population mean for
        customers without repeat purchases)."""
        if self.spend_ is None:
            raise BtydError("this baseline was fitted with fit_spend=False")
        x = summary["frequency"].to_numpy(dtype=float)
        m = summary["monetary_value"].to_numpy(dtype=float)
        return np.asarray(self.spend_.conditional_expected_average_profit(x, m), dtype=float)

    def expected_value(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """Expected spend in the next ``t`` periods: Gamma-Gamma spend x expected purchases.

        Undiscounted; lifetimes' ``customer_lifetime_value`` adds monthly discounting.
        """
        return self.expected_spend(summary) * self.expected_purchases(summary, t)

    def predict(self, summary: pd.DataFrame, t: float) -> pd.DataFrame:
        """Every output for horizon ``t`` as named columns, indexed like ``summary``."""
        out = pd.DataFrame(
            {
                "p_alive": self.p_alive(summary),
                "expected_purchases": self.expected_purchases(summary, t),
                "p_buy_within": self.p_buy_within(summary, t),
            },
            index=summary.index,
        )
        if self.spend_ is not None:
            out["expected_value"] = self.expected_value(summary, t)
        return out


__all__ = [
    "BtydBaseline",
    "BtydError",
    "bgnbd_expected_purchases",
    "observation_day_sql",
    "rfm_summary",
]
