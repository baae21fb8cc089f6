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
exactly midnight UTC: a snapshot at 00:00 sees the previous day's orders. An order stamped
exactly at that midnight is still at or before the cutoff, as everywhere else in Kizuna (a
label window starts after the cutoff, so it would otherwise count nowhere); it counts as a
purchase on the observation day, the last instant of which it is. So recency <= T always.

The count models are fitted by bounded L-BFGS-B on lifetimes' own likelihoods
(:func:`fit_count_model`); Pareto/NBD's likelihood, P(alive) and P(buy) are computed in log
space with a quadrature instead of lifetimes' hypergeometric differences, which overflow
or take seconds near the edges of the parameter space (Online Retail II, early cutoffs).
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
from autograd import value_and_grad
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, logsumexp, roots_jacobi

from kizuna.features.compute import Tables, as_utc
from kizuna.features.compute_sql import summed

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")
COUNT_MODELS = ("bgnbd", "pareto_nbd")
PARAMETER_NAMES = {"bgnbd": ("r", "alpha", "a", "b"), "pareto_nbd": ("r", "alpha", "s", "beta")}
#: Box on the log-parameters (time scaled so the oldest customer's age is 1): a maximum at
#: the edge of the parameter space (no visible drop-out: BG/NBD's a -> 0, Pareto/NBD's
#: s -> 0) stops at e^-9 instead of running off to where lifetimes' optimiser gives up.
LOG_BOUNDS = (-9.0, 9.0)
# Log-parameter starting points, in scaled time: every parameter 1, and a point near the
# published CDNOW figures (small r, a slow purchase rate, moderate drop-out).
_STARTS = (np.zeros(4), np.log([0.3, 0.1, 0.8, 2.0]))


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
    last_day = observation_day_sql(moment)
    frame = con.execute(
        f"""WITH purchase_days AS (
                SELECT customer_id,
                       least(CAST(timezone('UTC', ordered_at) AS DATE), {last_day}) AS day,
                       {summed("amount")} AS spend
                FROM {tables.orders}
                WHERE NOT coalesce(is_return, false) AND ordered_at <= $cutoff
                GROUP BY ALL),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY day) AS nth
                FROM purchase_days)
            SELECT customer_id,
                   count(*) - 1 AS frequency,
                   date_diff('day', min(day), max(day)) / {period_days} AS recency,
                   date_diff('day', min(day), {last_day}) / {period_days}
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
    late = summary["recency"] > summary["T"]
    if late.any():
        raise BtydError(
            f"recency exceeds T for {int(late.sum())} customers (e.g. {summary.index[late][0]!r}):"
            " the summary saw purchases after its end of observation"
        )


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


# Quadrature nodes on [0, 1] for the log-space integrals below: Gauss-Legendre panels whose
# widths grow fourfold from 1e-9 of the range up, so an integrand that falls by many orders
# of magnitude just after its start (a frequent buyer) is resolved as well as a flat one
# (log error under 1e-5 against adaptive quadrature, over the whole LOG_BOUNDS box).
_EDGES = np.concatenate([[0.0], np.geomspace(1e-9, 1.0, 16)])
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(6)
_MID, _HALF = (_EDGES[1:] + _EDGES[:-1]) / 2, (_EDGES[1:] - _EDGES[:-1]) / 2
_FRACTIONS = (_MID[:, None] + _HALF[:, None] * _GL_NODES[None, :]).ravel()
_FRACTION_WEIGHTS = (_HALF[:, None] * _GL_WEIGHTS[None, :]).ravel()


def _log_integral(c1, a1, c2, a2, lo, hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log of the integral over (lo, hi) of (a1 + tau)^-c1 (a2 + tau)^-c2, per row.

    Also returns the nodes tau and each node's share of the integral, so the derivative
    of the log-integral in any parameter is the share-weighted mean of the derivative of
    the log-integrand. Rows with hi <= lo give -inf and zero shares.
    """
    c1, a1, c2, a2, lo, hi = (
        np.asarray(v, dtype=float)[:, None] for v in np.broadcast_arrays(c1, a1, c2, a2, lo, hi)
    )
    width = hi - lo
    tau = lo + width * _FRACTIONS[None, :]
    log_terms = -c1 * np.log(a1 + tau) - c2 * np.log(a2 + tau) + np.log(_FRACTION_WEIGHTS)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = logsumexp(log_terms, axis=1, keepdims=True)
        shares = np.where(width > 0, np.exp(log_terms - total), 0.0)
        log_integral = np.where(width > 0, total + np.log(width), -np.inf)
    return log_integral[:, 0], tau, shares


def _pareto_nbd_terms(params, x, t_x, age, gradient: bool = False):
    """Pareto/NBD's log-likelihood per row in log space, optionally with its gradient.

    The likelihood is C * [(alpha + T)^-(r+x) (beta + T)^-s + s * I] with
    C = Gamma(r+x) alpha^r beta^s / Gamma(r) and I the integral over the death time tau in
    (t_x, T) of (alpha + tau)^-(r+x) (beta + tau)^-(s+1): lifetimes' s / (r+s+x) * A_0,
    without its difference of two hypergeometric functions (whose scipy hyp2f1 takes up to
    0.1 ms a value near the ridges of the likelihood, and often overflows there).

    Returns:
        (log-likelihood, log alive term - log likelihood = log P(alive)), and with
        ``gradient`` the (rows, 4) derivatives of the log-likelihood in (r, alpha, s, beta).
    """
    r, alpha, s, beta = params
    constant = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    log_integral, tau, shares = _log_integral(r + x, alpha, s + 1, beta, t_x, age)
    dead = np.log(s) + log_integral
    mixed = np.logaddexp(alive, dead)
    ll, log_p_alive = constant + mixed, alive - mixed
    if not gradient:
        return ll, log_p_alive
    p_alive = np.exp(log_p_alive)
    d_constant = np.column_stack(
        [
            digamma(r + x) - digamma(r) + np.log(alpha),
            np.full(len(x), r / alpha),
            np.full(len(x), np.log(beta)),
            np.full(len(x), s / beta),
        ]
    )
    d_alive = np.column_stack(
        [-np.log(alpha + age), -(r + x) / (alpha + age), -np.log(beta + age), -s / (beta + age)]
    )
    d_dead = np.column_stack(
        [
            -(shares * np.log(alpha + tau)).sum(axis=1),
            -(r + x) * (shares / (alpha + tau)).sum(axis=1),
            1 / s - (shares * np.log(beta + tau)).sum(axis=1),
            -(s + 1) * (shares / (beta + tau)).sum(axis=1),
        ]
    )
    grad = d_constant + p_alive[:, None] * d_alive + (1 - p_alive)[:, None] * d_dead
    return ll, log_p_alive, grad


def _pareto_nbd_nll(log_params, x, t_x, age, weights, penalizer) -> tuple[float, np.ndarray]:
    """lifetimes' ``ParetoNBDFitter._negative_log_likelihood`` (weighted sum over rows over
    the mean weight, plus ``penalizer`` * sum of squared parameters) and its gradient in the
    log-parameters, per row of ``x``, on the log-space likelihood."""
    params = np.exp(log_params)
    ll, _, grad = _pareto_nbd_terms(params, x, t_x, age, gradient=True)
    scale = weights.mean() * len(x)
    value = -(weights * ll).sum() / scale + penalizer * np.sum(params**2) / len(x)
    d_params = -(weights[:, None] * grad).sum(axis=0) / scale + 2 * penalizer * params / len(x)
    return float(value), d_params * params


def fit_count_model(
    model: str,
    frequency: np.ndarray,
    recency: np.ndarray,
    age: np.ndarray,
    weights: np.ndarray,
    penalizer: float = 0.0,
) -> tuple[dict[str, float], float]:
    """Maximum (penalised) likelihood of BG/NBD or Pareto/NBD by bounded L-BFGS-B.

    The objective is lifetimes' own negative log-likelihood on lifetimes' scaled time (ages
    over the oldest one), so a penalizer means what it means in lifetimes: BG/NBD's
    ``BetaGeoFitter._negative_log_likelihood`` with autograd's exact gradient, and
    Pareto/NBD's as :func:`_pareto_nbd_nll` computes it in log space with its exact
    gradient (the same values as lifetimes' where those are finite, to 1e-7). It is
    minimised over log-parameters in :data:`LOG_BOUNDS` from each of two starting points,
    and the best converged end is kept.

    Returns:
        The parameters in the summary's time unit, and the objective at the optimum (mean
        negative log-likelihood per customer, BG/NBD; per distinct row, Pareto/NBD).

    Raises:
        BtydError: if no start converges to a finite optimum; the message has the reason.
    """
    oldest = float(np.max(age))
    if oldest <= 0:
        raise BtydError("every customer's first purchase is on the last day; nothing to fit")
    x = np.asarray(frequency, dtype=float)
    args = (x, recency / oldest, age / oldest, np.asarray(weights, dtype=float), penalizer)
    if model == "bgnbd":
        # lifetimes' BG/NBD takes log-parameters and is written in autograd.numpy.
        objective = value_and_grad(lambda z: BetaGeoFitter._negative_log_likelihood(z, *args))
    else:

        def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
            return _pareto_nbd_nll(z, *args)

    ends, failures = [], []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in _STARTS:
            end = minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=[LOG_BOUNDS] * 4,
                options={"maxiter": 1000},
            )
            if end.success and np.isfinite(end.fun):
                ends.append(end)
            else:
                failures.append(str(end.message))
    if not ends:
        raise BtydError(
            f"{model} did not converge from any start on {int(np.sum(weights))} customers "
            f"(L-BFGS-B: {'; '.join(failures)})"
        )
    best = min(ends, key=lambda end: end.fun)
    values = np.exp(best.x)
    # alpha, and Pareto/NBD's beta, are rates per unit of time: back to the summary's unit.
    values[1] *= oldest
    if model == "pareto_nbd":
        values[3] *= oldest
    return dict(zip(PARAMETER_NAMES[model], values.tolist(), strict=True)), float(best.fun)


class BtydBaseline:
    """A fitted BTYD baseline: a purchase-count model and a Gamma-Gamma spend model.

    ``bgnbd`` is lifetimes' ``BetaGeoFitter``, ``pareto_nbd`` its ``ParetoNBDFitter``.
    Every prediction takes a summary (:func:`rfm_summary`) of the customers to score, at
    the same cutoff and period as the one fitted on, and returns one value per row.

    Args:
        model: ``"bgnbd"`` or ``"pareto_nbd"``.
        penalizer: L2 penalty on the count model's parameters in scaled time (lifetimes'
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
            BtydError: unknown model, a bad summary (recency > T, say), or an optimiser
                that converged from none of its starts.
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
        self.params_, self.objective_ = fit_count_model(
            self.model,
            triples["frequency"].to_numpy(),
            triples["recency"].to_numpy(dtype=float),
            triples["T"].to_numpy(dtype=float),
            triples[0].to_numpy(),
            penalizer,
        )
        if not np.all(np.isfinite(list(self.params_.values()))):
            raise BtydError(f"{self.model} fitted non-finite parameters {self.params_}")
        # lifetimes' predictions read nothing of a fit but params_.
        counts = (BetaGeoFitter if self.model == "bgnbd" else ParetoNBDFitter)(penalizer)
        counts.params_ = pd.Series(self.params_)
        counts.predict = counts.conditional_expected_number_of_purchases_up_to_time
        self.counts_ = counts
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
        if self.model == "pareto_nbd":
            return np.exp(self._pareto(x, t_x, age)[1])
        return np.asarray(self.counts_.conditional_probability_alive(x, t_x, age), dtype=float)

    def _pareto(self, x, t_x, age) -> tuple[np.ndarray, np.ndarray]:
        params = [self.params_[k] for k in PARAMETER_NAMES["pareto_nbd"]]
        with np.errstate(all="ignore"):
            return _pareto_nbd_terms(params, x, t_x, age)

    def expected_purchases(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """Expected repeat purchase days in the next ``t`` periods, (T, T + t].

        For BG/NBD with a + b + x < 1 (data with almost no visible drop-out) lifetimes'
        hypergeometric form is not finite; those rows use :func:`bgnbd_expected_purchases`.
        Pareto/NBD: lifetimes' closed form (its equation 41) on the log-space P(alive),
        P(alive) (r + x) (beta + T) / (alpha + T) (1 - ((beta + T) / (beta + T + t))^(s-1))
        / (s - 1), written with expm1 so it stays finite at s = 1.
        """
        x, t_x, age = self._columns(summary)
        if self.model == "pareto_nbd":
            r, alpha, s, beta = (self.params_[k] for k in PARAMETER_NAMES["pareto_nbd"])
            q = np.log1p(t / (beta + age))
            growth = q if abs(s - 1) < 1e-9 else -np.expm1(-(s - 1) * q) / (s - 1)
            return self.p_alive(summary) * (r + x) * (beta + age) / (alpha + age) * growth
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
        Pareto/NBD: given alive at T the rates are Gamma(r + x, alpha + T) (purchase) and
        Gamma(s, beta + T) (drop-out), so P(no purchase in t | alive) is
        E[exp(-(lambda + mu) t)] plus the integral over a death at T + u, u < t, of
        E[mu exp(-mu u)] E[exp(-lambda u)]; that integral is taken in log space like the
        likelihood's (lifetimes' ``conditional_probability_of_n_purchases_up_to_time`` is
        a difference of hypergeometric terms that overflows or stalls near the ridges).
        """
        x, _, age = self._columns(summary)
        if t <= 0:
            return np.zeros(len(x))
        if self.model == "bgnbd":
            r, alpha = self.params_["r"], self.params_["alpha"]
            none_if_alive = np.exp((r + x) * (np.log(alpha + age) - np.log(alpha + age + t)))
            return self.p_alive(summary) * (1.0 - none_if_alive)
        r, alpha, s, beta = (self.params_[k] for k in PARAMETER_NAMES["pareto_nbd"])
        log_died, _, _ = _log_integral(r + x, alpha, s + 1, beta, age, age + t)
        survives = np.exp(-(r + x) * np.log1p(t / (alpha + age)) - s * np.log1p(t / (beta + age)))
        died = np.exp(np.log(s) + (r + x) * np.log(alpha + age) + s * np.log(beta + age) + log_died)
        return np.clip(self.p_alive(summary) * (1.0 - survives - died), 0.0, 1.0)

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
