"""BTYD evaluation rows: count metrics, both count models, and a baseline that cannot fit."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from kizuna.training import baselines
from kizuna.training.baselines import btyd_rows
from kizuna.training.btyd import BtydError
from kizuna.training.evaluate import count_report
from tests.training.test_btyd import _tables


def test_count_report_by_hand() -> None:
    report = count_report([0, 2, 4], [1.0, 1.0, 3.0])
    assert report == {
        "mae_purchases": 1.0,
        "forecast_total": 5.0,
        "actual_total": 6.0,
        "aggregate_abs_pct_error": pytest.approx(100 / 6),
    }
    assert np.isnan(count_report([0, 0], [0.5, 0.5])["aggregate_abs_pct_error"])
    with pytest.raises(ValueError, match="same length"):
        count_report([1, 2], [1.0])


@pytest.fixture
def lake():
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    tables = _tables(con)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(60):
        days = np.sort(rng.choice(np.arange(0, 120), size=1 + i % 5, replace=False))
        for d in days:
            moment = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=int(d), hours=10)
            rows.append((f"k{i}", moment.strftime("%Y-%m-%d %H:%M"), rng.gamma(4.0, 5.0), False))
    con.executemany("INSERT INTO orders VALUES (?, CAST(? || '+00' AS TIMESTAMPTZ), ?, ?)", rows)
    return con, tables


def _test_frame(con) -> pd.DataFrame:
    customers = con.execute("SELECT DISTINCT customer_id FROM orders ORDER BY 1").df()
    n = len(customers)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "event_timestamp": datetime(2024, 5, 1, tzinfo=UTC),
            "churned": np.arange(n) % 3 == 0,
            "future_value": np.arange(n) % 4 * 10.0,
            "future_purchase_days": np.arange(n) % 4,
        }
    )


def test_value_rows_of_both_models_with_count_metrics(lake) -> None:
    con, tables = lake
    table = btyd_rows(con, tables, "value", _test_frame(con), 30)
    assert list(table.index) == ["bgnbd_gamma_gamma", "pareto_nbd_gamma_gamma"]
    assert {"spearman", "revenue_top20", "mae_purchases", "aggregate_abs_pct_error"} <= set(
        table.columns
    )
    assert np.isfinite(table.to_numpy(dtype=float)).all()
    assert (table["actual_total"] == _test_frame(con)["future_purchase_days"].sum()).all()
    # Without the label the count metrics are left out.
    plain = btyd_rows(
        con, tables, "value", _test_frame(con).drop(columns="future_purchase_days"), 30
    )
    assert "mae_purchases" not in plain.columns


def test_a_baseline_that_cannot_fit_keeps_its_row_and_says_why(lake, monkeypatch) -> None:
    con, tables = lake
    real = baselines._fitted

    def pareto_fails(con, tables, cutoff, model, fit_spend, penalizer=0.0):
        if model == "pareto_nbd":
            raise BtydError("pareto_nbd did not converge from any start")
        return real(con, tables, cutoff, model, fit_spend, penalizer)

    monkeypatch.setattr(baselines, "_fitted", pareto_fails)
    table = btyd_rows(con, tables, "churn", _test_frame(con), 30)
    assert list(table.index) == ["bgnbd", "bgnbd_p_alive", "pareto_nbd"]
    assert table.loc["pareto_nbd"].isna().all() and np.isfinite(table.loc["bgnbd", "auc"])
    assert table.attrs["baseline_notes"] == {
        "pareto_nbd": "pareto_nbd did not converge from any start"
    }
