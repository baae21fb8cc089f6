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
    bgnbd_expected_purchases,
    rfm_summary,
)
from kizuna.training.counts import RepeatForecaster, cutoff_frame, training_frame
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


def test_a_fit_that_does_not_converge_says_what_to_change() -> None:
    almost_nobody_returns = pd.DataFrame(
        {"frequency": [0] * 50 + [1, 1], "recency": [0.0] * 50 + [1.0, 2.0], "T": [30.0] * 52}
    )
    with pytest.raises(BtydError, match=r"bgnbd did not converge on 52 customers.*penalizer"):
        BtydBaseline("bgnbd", fit_spend=False).fit(almost_nobody_returns)


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
    target = cutoff_frame(con, tables, CALIBRATION_END, HOLDOUT_END)
    summary = rfm_summary(con, tables, CALIBRATION_END).loc[target["customer_id"]]
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
def test_kizuna_risk_ranks_one_time_buyers(cdnow) -> None:
    con, tables, target, summary = cdnow
    cutoffs = [START + timedelta(weeks=w) for w in range(13, 34, 2)]
    frame = training_frame(con, tables, cutoffs, CALIBRATION_END)
    assert frame["event_timestamp"].max() < CALIBRATION_END
    risk = RepeatForecaster(n_jobs=2).fit(frame).predict(target)["churn_probability"]
    once = (summary["frequency"] == 0).to_numpy()
    churned = target["purchases"].to_numpy()[once] == 0
    # Measured: 0.553 with these 11 cutoffs (BG/NBD's P(alive): exactly 0.5; its P(buy in
    # 39 weeks), which for one-time buyers depends on T alone: 0.568).
    assert roc_auc_score(churned, risk.to_numpy()[once]) > 0.53
    # Longer since the only purchase, higher risk on average.
    weeks_since = summary["T"].to_numpy()[once]
    early = weeks_since > np.median(weeks_since)
    assert risk.to_numpy()[once][early].mean() > risk.to_numpy()[once][~early].mean()


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
def test_cutoff_frame_btyd_outputs_are_finite_at_an_early_cutoff(cdnow) -> None:
    con, tables, _, _ = cdnow
    # At week 13 the unpenalised Pareto/NBD fit runs off along its (s, beta) ridge and
    # lifetimes' P(alive) overflows for customers who bought on the last day.
    frame = cutoff_frame(
        con, tables, START + timedelta(weeks=13), CALIBRATION_END, models=COUNT_MODELS
    )
    columns = [
        f"{m}_{o}"
        for m in ("bgnbd", "pareto_nbd")
        for o in ("p_alive", "expected_purchases", "p_buy_within")
    ]
    assert np.isfinite(frame[columns].to_numpy()).all()
    assert (frame["pareto_nbd_p_alive"] <= 1.0).all()
    # The window is 26 weeks long and the summary's customers are the ones who bought.
    assert (frame["window_periods"] == 26.0).all() and len(frame) == 2_357
