"""BTYD baselines: the summary matches lifetimes', BG/NBD reproduces the published CDNOW
figures, its P(alive) pathology on one-time buyers, and Kizuna's risk where it fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from lifetimes import ParetoNBDFitter
from lifetimes.utils import summary_data_from_transaction_data
from sklearn.metrics import roc_auc_score

from kizuna.features.compute import Tables
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake, empty_relation_sql
from kizuna.settings import Settings
from kizuna.training.btyd import (
    COUNT_MODELS,
    BtydBaseline,
    BtydError,
    _pareto_nbd_terms,
    bgnbd_expected_purchases,
    rfm_summary,
)
from tests.conftest import NOW

# (customer, purchase time, amount, is_return): two orders on one day, a return, a
# one-time buyer, and an order after the cutoff that must not count.
ORDERS = [
    ("a", "2024-01-01 09:00", 10.0, False),
    ("a", "2024-01-01 17:00", 5.0, False),
    ("a", "2024-01-15 10:00", 20.0, False),
    ("a", "2024-02-20 10:00", 30.0, False),
    ("a", "2024-02-21 10:00", -30.0, True),
    ("b", "2024-01-10 12:00", 8.0, False),
    ("c", "2024-01-03 12:00", 12.0, False),
    ("c", "2024-03-30 12:00", 18.0, False),
    ("c", "2024-04-02 12:00", 99.0, False),
]
CUTOFF = datetime(2024, 4, 1, tzinfo=UTC)  # midnight: sees up to 2024-03-31


def _tables(con: duckdb.DuckDBPyConnection) -> Tables:
    con.execute(
        "CREATE TABLE orders (customer_id VARCHAR, ordered_at TIMESTAMPTZ, amount DOUBLE, "
        "is_return BOOLEAN)"
    )
    con.executemany("INSERT INTO orders VALUES (?, CAST(? || '+00' AS TIMESTAMPTZ), ?, ?)", ORDERS)
    kinds = ("customers", "order_lines", "events", "offers", "exposures")
    return Tables(orders="orders", **{k: empty_relation_sql(k) for k in kinds})


@pytest.fixture
def tiny() -> tuple[duckdb.DuckDBPyConnection, Tables]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con, _tables(con)


def _lifetimes_summary(period_days: int) -> pd.DataFrame:
    frame = pd.DataFrame(ORDERS, columns=["customer_id", "ordered_at", "amount", "is_return"])
    frame = frame[~frame["is_return"]]
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    return summary_data_from_transaction_data(
        frame,
        "customer_id",
        "ordered_at",
        monetary_value_col="amount",
        observation_period_end="2024-03-31",
        freq="D",
        freq_multiplier=period_days,
    )


@pytest.mark.parametrize("period_days", [1, 7])
def test_summary_matches_lifetimes(tiny, period_days: int) -> None:
    con, tables = tiny
    ours = rfm_summary(con, tables, CUTOFF, period_days=period_days)
    theirs = _lifetimes_summary(period_days)
    assert list(ours.index) == ["a", "b", "c"]
    pd.testing.assert_frame_equal(
        ours[["frequency", "recency", "T", "monetary_value"]],
        theirs[["frequency", "recency", "T", "monetary_value"]].rename_axis("customer_id"),
        check_dtype=False,
    )


def test_summary_values_by_hand(tiny) -> None:
    con, tables = tiny
    summary = rfm_summary(con, tables, CUTOFF, period_days=1)
    # a: days 01-01 (15.0, first), 01-15 (20), 02-20 (30); the return is not a purchase.
    assert summary.loc["a"].to_dict() == {
        "frequency": 2,
        "recency": 50.0,
        "T": 90.0,
        "monetary_value": 25.0,
    }
    assert summary.loc["b", "frequency"] == 0 and summary.loc["b", "monetary_value"] == 0
    # c's order on 04-02 is after the cutoff; 03-30 is a repeat purchase.
    assert summary.loc["c", "frequency"] == 1 and summary.loc["c", "monetary_value"] == 18.0
    # A cutoff that is not midnight sees its own day.
    later = rfm_summary(con, tables, datetime(2024, 4, 2, 13, tzinfo=UTC), period_days=1)
    assert later.loc["c"].to_dict()["frequency"] == 2
    assert later.loc["a", "T"] == 92.0


def test_summary_rejects_a_bad_period(tiny) -> None:
    con, tables = tiny
    with pytest.raises(BtydError, match="period_days must be a positive"):
        rfm_summary(con, tables, CUTOFF, period_days=0)


def _synthetic_summary(seed: int = 3, n: int = 3000) -> pd.DataFrame:
    """Customers from a BG/NBD world, so the fit has something to find."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.5, 1 / 4.0, n)
    drop = rng.beta(0.8, 2.5, n)
    age = rng.uniform(20, 40, n)
    rows = []
    for lam, p, big_t in zip(rate, drop, age, strict=True):
        t, last, x = 0.0, 0.0, 0
        while True:
            t += rng.exponential(1 / lam)
            if t > big_t:
                break
            x, last = x + 1, t
            if rng.random() < p:
                break
        rows.append((x, last, big_t, rng.gamma(6, 2.5) if x else 0.0))
    return pd.DataFrame(rows, columns=["frequency", "recency", "T", "monetary_value"])


def test_baseline_outputs_are_consistent() -> None:
    summary = _synthetic_summary()
    for model in ("bgnbd", "pareto_nbd"):
        fitted = BtydBaseline(model).fit(summary)
        alive = fitted.p_alive(summary)
        buy = fitted.p_buy_within(summary, 10.0)
        more = fitted.p_buy_within(summary, 30.0)
        expected = fitted.expected_purchases(summary, 10.0)
        assert ((alive >= 0) & (alive <= 1)).all()
        # Buying needs being alive; a longer window cannot lower the chance of a purchase.
        assert (buy <= alive + 1e-9).all() and (more >= buy - 1e-9).all()
        # At least one purchase is no more likely than the expected count allows.
        assert (buy <= expected + 1e-9).all()
        value = fitted.expected_value(summary, 10.0)
        np.testing.assert_allclose(value, fitted.expected_spend(summary) * expected)
        assert set(fitted.predict(summary, 10.0).columns) == {
            "p_alive",
            "expected_purchases",
            "p_buy_within",
            "expected_value",
        }


def test_bgnbd_p_buy_within_matches_a_simulation() -> None:
    """The closed form against Monte Carlo draws from the posterior of one customer."""
    summary = _synthetic_summary()
    fitted = BtydBaseline("bgnbd", fit_spend=False).fit(summary)
    r, alpha, a, b = (fitted.params_[k] for k in ("r", "alpha", "a", "b"))
    one = pd.DataFrame({"frequency": [2], "recency": [12.0], "T": [30.0]})
    rng = np.random.default_rng(0)
    n = 400_000
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    # Importance weights: the likelihood of the history (x=2, t_x=12, T=30) per draw.
    x, t_x, big_t = 2, 12.0, 30.0
    alive = lam**x * np.exp(-lam * big_t) * (1 - p) ** x
    dead = lam**x * np.exp(-lam * t_x) * p * (1 - p) ** (x - 1)
    weight = alive + dead
    is_alive = rng.random(n) < alive / weight
    buys = is_alive & (rng.random(n) < 1 - np.exp(-lam * 8.0))
    simulated = float(np.sum(weight * buys) / np.sum(weight))
    assert fitted.p_buy_within(one, 8.0)[0] == pytest.approx(simulated, abs=0.01)


def test_bgnbd_expected_purchases_by_quadrature_matches_lifetimes() -> None:
    summary = _synthetic_summary()
    fitted = BtydBaseline("bgnbd", fit_spend=False).fit(summary)
    quadrature = bgnbd_expected_purchases(
        fitted.params_,
        summary["frequency"].to_numpy(dtype=float),
        fitted.p_alive(summary),
        summary["T"].to_numpy(dtype=float),
        13.0,
    )
    np.testing.assert_allclose(quadrature, fitted.expected_purchases(summary, 13.0), rtol=1e-6)


def test_a_fit_at_the_edge_of_the_parameter_space_stops_at_the_bounds() -> None:
    # Almost nobody returns: lifetimes' optimiser did not converge here; the bounded one
    # stops where the likelihood is flattest, with finite outputs.
    almost_nobody_returns = pd.DataFrame(
        {"frequency": [0] * 50 + [1, 1], "recency": [0.0] * 50 + [1.0, 2.0], "T": [30.0] * 52}
    )
    fitted = BtydBaseline("bgnbd", fit_spend=False).fit(almost_nobody_returns)
    assert np.isfinite(fitted.predict(almost_nobody_returns, 10.0).to_numpy()).all()
    assert np.isfinite(fitted.objective_)


def test_a_fit_that_does_not_converge_says_why(monkeypatch) -> None:
    from scipy.optimize import OptimizeResult

    def stuck(*_args, **_kwargs) -> OptimizeResult:
        return OptimizeResult(success=False, message="ABNORMAL_TERMINATION_IN_LNSRCH", fun=1.0)

    monkeypatch.setattr("kizuna.training.btyd.minimize", stuck)
    with pytest.raises(BtydError, match=r"bgnbd did not converge from any start on 3000 .*LNSRCH"):
        BtydBaseline("bgnbd", fit_spend=False).fit(_synthetic_summary())


def test_pareto_nbd_log_space_outputs_match_lifetimes() -> None:
    summary = _synthetic_summary()
    fitted = BtydBaseline("pareto_nbd", fit_spend=False).fit(summary)
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    theirs = fitted.counts_  # lifetimes' own formulas with the same parameters
    np.testing.assert_allclose(
        fitted.p_alive(summary), theirs.conditional_probability_alive(x, t_x, age), atol=1e-6
    )
    np.testing.assert_allclose(
        fitted.expected_purchases(summary, 10.0),
        theirs.conditional_expected_number_of_purchases_up_to_time(10.0, x, t_x, age),
        rtol=1e-5,
    )
    none = theirs.conditional_probability_of_n_purchases_up_to_time(0, 10.0, x, t_x, age)
    np.testing.assert_allclose(fitted.p_buy_within(summary, 10.0), 1 - none, atol=1e-6)
    # The log-likelihood the fit maximised is lifetimes' (scaled time, as lifetimes fits).
    params = [fitted.params_[k] for k in ("r", "alpha", "s", "beta")]
    ours, _ = _pareto_nbd_terms(params, x, t_x, age)
    np.testing.assert_allclose(
        ours, ParetoNBDFitter._conditional_log_likelihood(params, x, t_x, age), atol=1e-5
    )


def test_a_summary_with_recency_beyond_t_is_refused() -> None:
    late = pd.DataFrame({"frequency": [1, 2], "recency": [5.0, 9.0], "T": [6.0, 8.0]})
    with pytest.raises(BtydError, match="recency exceeds T for 1 customers"):
        BtydBaseline("bgnbd", fit_spend=False).fit(late)


def test_an_order_at_a_midnight_cutoff_counts_on_the_observation_day(tiny) -> None:
    con, tables = tiny
    con.execute("INSERT INTO orders VALUES ('b', TIMESTAMPTZ '2024-04-01 00:00:00+00', 7, false)")
    summary = rfm_summary(con, tables, CUTOFF, period_days=1)
    # b bought on 01-10 and at exactly the cutoff: a repeat purchase on 03-31, the last day.
    assert summary.loc["b"].to_dict() == {
        "frequency": 1,
        "recency": 81.0,
        "T": 81.0,
        "monetary_value": 7.0,
    }
    assert (summary["recency"] <= summary["T"]).all()
    for model in COUNT_MODELS:
        fitted = BtydBaseline(model, fit_spend=False).fit(summary)
        assert np.isfinite(fitted.predict(summary, 30.0).to_numpy()).all()


def test_baseline_errors() -> None:
    with pytest.raises(BtydError, match="unknown model 'nbd'"):
        BtydBaseline("nbd").fit(_synthetic_summary(n=50))
    with pytest.raises(BtydError, match="the summary is empty"):
        BtydBaseline().fit(pd.DataFrame(columns=["frequency", "recency", "T"]))
    with pytest.raises(BtydError, match="lacks recency"):
        BtydBaseline().fit(pd.DataFrame({"frequency": [1], "T": [3.0]}))
    with pytest.raises(BtydError, match="fit the baseline before predicting"):
        BtydBaseline().p_alive(_synthetic_summary(n=5))


# --- the CDNOW sample (Fader, Hardie & Lee 2005) ------------------------------------------

START = datetime(1997, 1, 1, tzinfo=UTC)
CALIBRATION_END = START + timedelta(weeks=39)
HOLDOUT_END = START + timedelta(weeks=78, days=1)


@pytest.fixture(scope="module")
def cdnow(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(home=tmp_path_factory.mktemp("cdnow"))
    ingest([shared_data / "cdnow" / "CDNOW_sample.txt"], settings, preset="cdnow", now=NOW)
    con, tables = connect(settings), Tables.from_lake(Lake(settings))
    summary = rfm_summary(con, tables, CALIBRATION_END)
    # Holdout purchase days per customer (distinct days, returns excluded).
    bought = con.execute(
        f"""SELECT customer_id, count(DISTINCT CAST(timezone('UTC', ordered_at) AS DATE)) AS n
            FROM {tables.orders} WHERE NOT coalesce(is_return, false)
              AND ordered_at > $start AND ordered_at <= $end GROUP BY ALL""",
        {"start": CALIBRATION_END, "end": HOLDOUT_END},
    ).df()
    purchases = bought.set_index("customer_id")["n"].reindex(summary.index).fillna(0)
    target = pd.DataFrame({"customer_id": summary.index, "purchases": purchases.to_numpy()})
    return con, tables, target, summary


@pytest.mark.shared
def test_bgnbd_reproduces_the_published_cdnow_parameters(cdnow) -> None:
    _, _, target, summary = cdnow
    assert len(summary) == 2_357
    fitted = BtydBaseline("bgnbd").fit(summary)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert fitted.params_[name] == pytest.approx(value, abs=0.001)
    # The aggregate holdout forecast and the actual purchase days of the README.
    assert fitted.expected_purchases(summary, 39.0).sum() == pytest.approx(1_669, rel=0.01)
    assert target["purchases"].sum() == 1_882


@pytest.mark.shared
def test_bgnbd_p_alive_is_one_for_every_one_time_buyer(cdnow) -> None:
    _, _, target, summary = cdnow
    fitted = BtydBaseline("bgnbd", fit_spend=False).fit(summary)
    alive = fitted.p_alive(summary)
    once = summary["frequency"].to_numpy() == 0
    bought = target["purchases"].to_numpy() > 0
    assert once.sum() > 1_000
    np.testing.assert_allclose(alive[once], 1.0)
    # One-time buyers come back less often than repeat buyers, yet BG/NBD calls them the
    # surest to be alive: P(alive) as a risk ranks them backwards.
    assert bought[once].mean() < bought[~once].mean() - 0.2
    assert alive[once].mean() > alive[~once].mean()
    # Among one-time buyers P(alive) says nothing at all.
    assert roc_auc_score(~bought[once], 1 - alive[once]) == 0.5


@pytest.mark.shared
def test_pareto_nbd_fit_on_distinct_triples_matches_lifetimes(cdnow) -> None:
    _, _, _, summary = cdnow
    ours = BtydBaseline("pareto_nbd", fit_spend=False).fit(summary)
    theirs = ParetoNBDFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    expected = theirs.conditional_expected_number_of_purchases_up_to_time(
        39.0, summary["frequency"], summary["recency"], summary["T"]
    )
    np.testing.assert_allclose(ours.expected_purchases(summary, 39.0), expected, rtol=0.01)


@pytest.mark.shared
def test_btyd_outputs_are_finite_at_an_early_cutoff(cdnow) -> None:
    con, tables, _, _ = cdnow
    # At week 13 the unpenalised Pareto/NBD fit runs off along its (s, beta) ridge and
    # lifetimes' P(alive) overflows for customers who bought on the last day.
    summary = rfm_summary(con, tables, START + timedelta(weeks=13))
    for model in COUNT_MODELS:
        fitted = BtydBaseline(model, fit_spend=False).fit(summary)
        outputs = fitted.predict(summary, 26.0)
        assert np.isfinite(outputs.to_numpy()).all(), model
        assert (outputs["p_alive"] <= 1.0).all()


# --- Online Retail II: almost no visible drop-out ------------------------------------------


@pytest.fixture(scope="module")
def online_retail(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(home=tmp_path_factory.mktemp("online-retail"))
    path = shared_data / "online-retail-ii" / "online_retail_II_2009-12_2010-12.csv.gz"
    ingest([path], settings, preset="online-retail", now=NOW)
    return connect(settings), Tables.from_lake(Lake(settings))


@pytest.mark.shared
@pytest.mark.parametrize("period_days", [1, 7])
def test_both_count_models_converge_on_online_retail(online_retail, period_days: int) -> None:
    con, tables = online_retail
    summary = rfm_summary(con, tables, datetime(2010, 9, 9, tzinfo=UTC), period_days)
    assert len(summary) == 3_361
    for model in COUNT_MODELS:
        fitted = BtydBaseline(model).fit(summary)
        outputs = fitted.predict(summary, 91.0 / period_days)
        assert np.isfinite(outputs.to_numpy()).all(), model
        assert ((outputs["p_alive"] >= 0) & (outputs["p_alive"] <= 1)).all()
        # Measured: r = 0.774 (BG/NBD) and 0.777 (Pareto/NBD), the drop-out at its bound.
        assert fitted.params_["r"] == pytest.approx(0.775, abs=0.005)
    assert fitted.params_["s"] < 0.01
