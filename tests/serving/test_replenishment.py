"""Replenishment cycles: DuckDB against an independent pandas computation on the simulated
lake, exact cycles, statuses and reasons on a tiny lake, and the cache."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kizuna.features.lake import Lake
from kizuna.serving.replenishment import (
    COLUMNS,
    ReplenishmentCache,
    categories,
    compute_cycles,
    replenishment,
    timing_reasons,
)
from kizuna.settings import Settings
from tests.world import ingest_csvs


def _reference(settings: Settings) -> pd.DataFrame:
    """Every (customer, category) cycle, recomputed in pandas from the lake's rows."""
    lake = Lake(settings)
    orders, lines = lake.read("orders"), lake.read("order_lines")
    customers = lake.read("customers")
    as_of = orders["ordered_at"].max()
    bought = lines.merge(orders[~orders["is_return"]], on="order_id")
    bought = bought[(bought["quantity"] > 0) & bought["category"].notna()]
    bought = bought.assign(day=bought["ordered_at"].dt.tz_convert("UTC").dt.normalize())
    rows = []
    for (customer, category), group in bought.groupby(["customer_id", "category"]):
        days = np.sort(group["day"].unique())
        gaps = np.diff(days) / np.timedelta64(1, "D")
        rows.append(
            {
                "customer_id": customer,
                "category": category,
                "purchases": len(days),
                "last_day": pd.Timestamp(days[-1]),
                "last_bought_at": group["ordered_at"].max(),
                "customer_cycle_days": float(np.median(gaps)) if len(gaps) else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    typical = out[out["purchases"] >= 2].groupby("category")["customer_cycle_days"].median()
    out["category_cycle_days"] = out["category"].map(typical)

    def blended(r) -> float:
        own, usual, n = r["customer_cycle_days"], r["category_cycle_days"], r["purchases"]
        if n >= 3 or pd.isna(usual):
            return own
        return (own + usual) / 2 if n == 2 else usual

    out["cycle_days"] = out.apply(blended, axis=1)
    opted_out = set(customers.loc[customers["consent_profiling"].eq(False), "customer_id"])
    out = out[~out["customer_id"].isin(opted_out) & out["cycle_days"].notna()]
    whole = np.floor(out["cycle_days"] + 0.5).astype(int)
    due = out["last_day"] + pd.to_timedelta(whole, unit="D")
    out["due_at"] = due
    out["days_until_due"] = (due - as_of.normalize()).dt.days
    return out.drop(columns="last_day")


@pytest.fixture(scope="module")
def world(sim_world):
    settings = sim_world.settings
    return settings, compute_cycles(settings), _reference(settings)


def test_cycles_match_pandas_on_the_simulated_lake(world) -> None:
    settings, cycles, expected = world
    got = replenishment(cycles, None, 14)
    assert list(got.columns) == COLUMNS
    assert len(got) == len(expected) > 5_000
    merged = got.merge(expected, on=["customer_id", "category"], suffixes=("", "_pd"))
    assert len(merged) == len(got)
    for column in ("purchases", "days_until_due"):
        assert (merged[column] == merged[f"{column}_pd"]).all(), column
    for column in ("customer_cycle_days", "category_cycle_days", "cycle_days"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_pd"], err_msg=column)
    for column in ("last_bought_at", "due_at"):
        assert (merged[column] == merged[f"{column}_pd"]).all(), column
    assert got.attrs["as_of"] == Lake(settings).read("orders")["ordered_at"].max()


def test_status_follows_the_due_window_and_one_cycle_of_grace(world) -> None:
    _, cycles, _ = world
    rows = replenishment(cycles, None, 14)
    until, cycle = rows["days_until_due"], rows["cycle_days"]
    lapsed = -until > cycle
    expected = np.where(lapsed, "lapsed", np.where(until <= 14, "due", "not due"))
    assert (rows["status"] == expected).all()
    assert set(rows["status"]) == {"due", "lapsed", "not due"}
    assert rows["days_until_due"].is_monotonic_increasing
    narrower = replenishment(cycles, None, 3)
    assert (narrower["status"] == "due").sum() < (rows["status"] == "due").sum()


def test_reasons_explain_timing_in_words(world) -> None:
    _, cycles, _ = world
    rows = replenishment(cycles, None, 14)
    sample = cycles.frame.sample(200, random_state=4)
    for _, row in sample.iterrows():
        assert row["reasons"] == timing_reasons(row)
    lapsed = rows[rows["status"] == "lapsed"]["reasons"]
    assert all(r[-1].endswith("more than a full cycle") for r in lapsed)
    for reasons, category in zip(rows["reasons"], rows["category"], strict=True):
        assert len(reasons) == 3 and category in reasons[0] and category in reasons[1]
        text = " ".join(reasons)
        assert "churn" not in text and not re.search(r"\b[01] days\b", text)
        assert "_" not in text and "=" not in text
        assert ": " not in text  # no "name: value" lines


def test_category_filter_and_summaries(world) -> None:
    _, cycles, expected = world
    grocery = replenishment(cycles, "Grocery", 14)
    assert set(grocery["category"]) == {"grocery"}
    assert len(grocery) == (expected["category"] == "grocery").sum()
    assert replenishment(cycles, "no such thing", 14).empty
    summary = {c["category"]: c for c in categories(cycles)}
    assert set(summary) == set(expected["category"])
    for name, c in summary.items():
        mine = expected[expected["category"] == name]
        assert c["customers"] == len(mine)
        assert c["repeat_customers"] == (mine["purchases"] >= 2).sum()
        assert c["cycle_days"] == pytest.approx(mine["category_cycle_days"].iloc[0])
    counts = [c["customers"] for c in categories(cycles)]
    assert counts == sorted(counts, reverse=True)


# -- a tiny lake with known cycles ----------------------------------------------------------
CUSTOMERS = """customer_id,consent_profiling
K1,true
K2,
K3,true
K4,true
K5,false
"""
# K1: coffee every 28 days (two orders on the first day count once). K2: coffee twice, 30
# days apart. K3: coffee every 10 days, long ago, and a coffee return. K4: coffee and tea
# once, coffee on the data's last day. K5 (profiling opt-out): coffee twice, 40 days apart.
ORDERS = """order_id,customer_id,ordered_at,amount,is_return
k1a,K1,2025-01-01T08:00:00Z,10,
k1b,K1,2025-01-01T20:00:00Z,10,
k1c,K1,2025-01-29T10:00:00Z,10,
k1d,K1,2025-02-26T10:00:00Z,10,
k1e,K1,2025-03-26T23:30:00Z,10,
k2a,K2,2025-03-01T10:00:00Z,10,
k2b,K2,2025-03-31T10:00:00Z,10,
k3a,K3,2025-01-05T10:00:00Z,10,
k3b,K3,2025-01-15T10:00:00Z,10,
k3c,K3,2025-01-25T10:00:00Z,10,
k3r,K3,2025-02-01T10:00:00Z,-10,true
k4t,K4,2025-04-19T10:00:00Z,10,
k4c,K4,2025-04-20T09:00:00Z,10,
k5a,K5,2025-02-01T10:00:00Z,10,
k5b,K5,2025-03-13T10:00:00Z,10,
"""
LINES = """order_id,product_id,category,quantity,unit_price
k1a,C1,coffee,1,10
k1b,C1,coffee,1,10
k1c,C1,coffee,1,10
k1d,C1,coffee,1,10
k1e,C1,coffee,1,10
k2a,C1,coffee,1,10
k2b,C1,coffee,1,10
k3a,C1,coffee,1,10
k3b,C1,coffee,1,10
k3c,C1,coffee,1,10
k3c,X1,,1,5
k3r,C1,coffee,-1,10
k4t,T1,tea,1,10
k4c,C1,coffee,1,10
k5a,C1,coffee,1,10
k5b,C1,coffee,1,10
"""


@pytest.fixture
def tiny(tmp_path: Path, settings: Settings) -> Settings:
    ingest_csvs(tmp_path / "in", settings, customers=CUSTOMERS, orders=ORDERS, order_lines=LINES)
    return settings


def test_tiny_lake_cycles_statuses_and_reasons(tiny: Settings) -> None:
    rows = replenishment(tiny, "coffee", 14).set_index("customer_id")
    assert rows.attrs["as_of"] == pd.Timestamp("2025-04-20 09:00", tz="UTC")
    # The opt-out is not listed, but their 40-day gap counts toward coffee's cycle:
    # median(28, 30, 10, 40) = 29.
    assert set(rows.index) == {"K1", "K2", "K3", "K4"}
    assert (rows["category_cycle_days"] == 29.0).all()
    k1, k2, k3, k4 = (rows.loc[c] for c in ("K1", "K2", "K3", "K4"))
    assert (k1.purchases, k1.customer_cycle_days, k1.cycle_days) == (4, 28.0, 28.0)
    assert k1.due_at == pd.Timestamp("2025-04-23", tz="UTC") and k1.days_until_due == 3
    assert k1.last_bought_at == pd.Timestamp("2025-03-26 23:30", tz="UTC")
    assert k1.status == "due"
    assert k1.reasons == [
        "buys coffee about every 28 days (4 times so far)",
        "last bought coffee 25 days ago",
        "due in 3 days",
    ]
    # Two purchases: halfway between their 30 days and coffee's 29; the due date rounds
    # 29.5 up to 30 days.
    assert (k2.purchases, k2.cycle_days, k2.days_until_due, k2.status) == (2, 29.5, 10, "due")
    assert k2.reasons == [
        "bought coffee twice, 30 days apart; coffee buyers rebuy about every 29 days",
        "last bought coffee 20 days ago",
        "due in 10 days",
    ]
    # The return is not a purchase; 75 days overdue on a 10-day cycle is lapsed.
    assert (k3.purchases, k3.cycle_days, k3.days_until_due) == (3, 10.0, -75)
    assert k3.status == "lapsed"
    assert k3.reasons[-1] == "overdue by 75 days, more than a full cycle"
    # One purchase: coffee's cycle.
    assert (k4.purchases, k4.cycle_days, k4.days_until_due, k4.status) == (1, 29.0, 29, "not due")
    assert np.isnan(k4.customer_cycle_days)
    assert k4.reasons == [
        "bought coffee once; coffee buyers rebuy about every 29 days",
        "bought coffee today",
        "due in 29 days",
    ]
    assert replenishment(tiny, "coffee", 7).set_index("customer_id").loc["K2", "status"] == (
        "not due"
    )


def test_a_category_nobody_bought_twice_has_no_cycle(tiny: Settings) -> None:
    assert replenishment(tiny, "tea", 14).empty
    summary = {c["category"]: c for c in categories(tiny)}
    assert summary["tea"] == {
        "category": "tea",
        "customers": 1,
        "repeat_customers": 0,
        "cycle_days": None,
    }
    assert summary["coffee"] == {
        "category": "coffee",
        "customers": 4,
        "repeat_customers": 3,
        "cycle_days": 29.0,
    }
    assert list(summary) == ["coffee", "tea"]


def test_as_of_can_be_moved(tiny: Settings) -> None:
    earlier = compute_cycles(tiny, as_of=datetime(2025, 4, 1, 12))  # naive means UTC
    k1 = replenishment(earlier, "coffee").set_index("customer_id").loc["K1"]
    assert (k1.days_until_due, k1.status) == (22, "not due")
    assert "last bought coffee 6 days ago" in k1.reasons
    assert "K4" not in replenishment(earlier, "coffee")["customer_id"].tolist()


def test_reasons_for_the_days_around_the_due_date() -> None:
    row = {
        "category": "pet food",
        "purchases": 5,
        "customer_cycle_days": 1.0,
        "category_cycle_days": 30.0,
        "cycle_days": 1.0,
        "days_since_last": 1,
        "days_until_due": 0,
    }
    assert timing_reasons(row) == [
        "buys pet food about every day (5 times so far)",
        "last bought pet food yesterday",
        "due today",
    ]
    assert timing_reasons(row | {"days_until_due": 1})[-1] == "due tomorrow"
    assert timing_reasons(row | {"days_until_due": -1})[-1] == "overdue by 1 day"
    assert timing_reasons(row | {"days_until_due": -2})[-1] == (
        "overdue by 2 days, more than a full cycle"
    )


def test_an_empty_lake_has_no_cycles(settings: Settings) -> None:
    rows = replenishment(settings, None, 14)
    assert rows.empty and list(rows.columns) == COLUMNS and categories(settings) == []
    with pytest.raises(ValueError, match="within_days"):
        replenishment(settings, None, -1)


def test_cache_recomputes_when_the_lake_changes(tiny: Settings, tmp_path: Path) -> None:
    cache = ReplenishmentCache()
    first = cache.get(tiny)
    assert cache.get(tiny) is first
    orders = "order_id,customer_id,ordered_at,amount\nk2c,K2,2025-04-25T10:00:00Z,10\n"
    lines = "order_id,product_id,category,quantity,unit_price\nk2c,C1,coffee,1,10\n"
    ingest_csvs(tmp_path / "more", tiny, orders=orders, order_lines=lines)
    fresh = cache.get(tiny)
    assert fresh is not first and fresh.lake_version == first.lake_version + 1
    k2 = replenishment(fresh, "coffee").set_index("customer_id").loc["K2"]
    assert k2.purchases == 3 and k2.reasons[1] == "bought coffee today"
    assert fresh.as_of == datetime(2025, 4, 25, 10, tzinfo=UTC)
    assert math.isclose(k2.customer_cycle_days, 27.5)  # median of 30 and 25
