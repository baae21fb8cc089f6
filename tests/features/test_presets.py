"""Each preset on its real file: counts match the facts in ../shared/data/README.md."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from kizuna.features.ingest import IngestError, ingest
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from tests.conftest import NOW

pytestmark = pytest.mark.shared

RETAIL = "online-retail-ii/online_retail_II_2009-12_2010-12.csv.gz"
HILLSTROM = (
    "hillstrom/Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv.gz"
)


@pytest.fixture(scope="module")
def retail(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(home=tmp_path_factory.mktemp("retail"))
    first = ingest([shared_data / RETAIL], settings, preset="online-retail", now=NOW)
    second = ingest([shared_data / RETAIL], settings, preset="online-retail", now=NOW)
    return settings, first, second


def test_online_retail_lands_lines_with_a_customer_and_quarantines_the_rest(retail) -> None:
    settings, first, _ = retail
    lines = first.kinds["online_retail_line"]
    assert (lines.read, lines.rejected_rows) == (525_461, 107_927)
    # 107,927 lines have no customer id; three of them also carry a negative price.
    assert lines.rejected["customer_id:missing"] == 107_927
    assert first.kinds["order_lines"].accepted == 525_461 - 107_927
    assert first.kinds["customers"].accepted == 4_383
    lake = Lake(settings)
    quarantined = lake.quarantine("order_lines")
    assert len(quarantined) == 107_927
    assert set(quarantined["Customer ID"]) == {""}
    assert {"Invoice", "StockCode", "Description", "Price", "_reasons"} <= set(quarantined.columns)


def test_online_retail_cancellations_become_returns(retail) -> None:
    settings, first, _ = retail
    con = duckdb.connect()
    lake = Lake(settings)
    returns, positive_returns, orders = con.execute(
        f"SELECT count(*) FILTER (is_return), count(*) FILTER (is_return AND amount > 0), "
        f"count(*) FROM {lake.relation_sql('orders')}"
    ).fetchone()
    invoices = con.execute(
        f"SELECT count(DISTINCT order_id), count(DISTINCT order_id) FILTER "
        f"(starts_with(order_id, 'oretail-C')) FROM {lake.relation_sql('order_lines')}"
    ).fetchone()
    assert orders == invoices[0] == first.kinds["orders"].accepted
    assert returns == invoices[1] > 3_000
    assert positive_returns == 0
    # Order amounts add up to their lines.
    gap = con.execute(
        f"SELECT max(abs(o.amount - l.total)) FROM {lake.relation_sql('orders')} o JOIN "
        f"(SELECT order_id, sum(quantity * unit_price) AS total FROM "
        f"{lake.relation_sql('order_lines')} GROUP BY order_id) l USING (order_id)"
    ).fetchone()[0]
    assert gap < 0.01


def test_online_retail_again_adds_nothing(retail) -> None:
    settings, first, second = retail
    for kind in ("orders", "order_lines", "customers"):
        assert second.kinds[kind].accepted == 0
        assert second.kinds[kind].already_in_lake == first.kinds[kind].accepted
    assert second.kinds["order_lines"].already_quarantined == 107_927
    assert len(Lake(settings).quarantine("order_lines")) == 107_927


@pytest.mark.parametrize(
    ("name", "orders", "customers", "zero_value"),
    [("CDNOW_master.txt", 69_659, 23_570, 80), ("CDNOW_sample.txt", 6_919, 2_357, None)],
)
def test_cdnow_transactions_become_orders(
    shared_data: Path, settings: Settings, name: str, orders: int, customers: int, zero_value
) -> None:
    report = ingest([shared_data / "cdnow" / name], settings, preset="cdnow", now=NOW)
    assert report.kinds["orders"].accepted == orders
    assert report.kinds["orders"].rejected_rows == 0
    assert report.kinds["customers"].accepted == customers
    frame = Lake(settings).read("orders")
    assert frame["ordered_at"].min().date().isoformat() == "1997-01-01"
    assert frame["ordered_at"].max().date().isoformat() == "1998-06-30"
    if zero_value is not None:
        assert (frame["amount"] == 0).sum() == zero_value
    signup = Lake(settings).read("customers")["signup_at"]
    assert signup.max() < frame["ordered_at"].min() + __import__("pandas").Timedelta(days=90)


def test_hillstrom_reproduces_the_published_arms(shared_data: Path, settings: Settings) -> None:
    report = ingest([shared_data / HILLSTROM], settings, preset="hillstrom", now=NOW)
    assert report.kinds["customers"].accepted == 64_000
    assert report.kinds["offers"].accepted == 2
    lake = Lake(settings)
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT coalesce(x.offer_id, 'control') AS arm, count(*) AS n,
                   avg((o.order_id IS NOT NULL)::INT) AS conversion,
                   avg((e.event_id IS NOT NULL)::INT) AS visit,
                   sum(coalesce(o.amount, 0)) / count(*) AS spend
            FROM {lake.relation_sql("exposures")} x
            LEFT JOIN {lake.relation_sql("orders")} o USING (customer_id)
            LEFT JOIN {lake.relation_sql("events")} e USING (customer_id)
            GROUP BY ALL ORDER BY arm"""
    ).fetchall()
    got = {
        arm: (n, round(100 * conv, 3), round(100 * visit, 2), round(spend, 3))
        for arm, n, conv, visit, spend in rows
    }
    assert got == {
        "control": (21_306, 0.573, 10.62, 0.653),
        "hillstrom-mens-email": (21_307, 1.253, 18.28, 1.423),
        "hillstrom-womens-email": (21_387, 0.884, 15.14, 1.077),
    }
    exposures = lake.read("exposures")
    assert exposures["propensity"].round(4).unique().tolist() == [0.3333]
    assert exposures["offer_id"].isna().sum() == 21_306


def test_a_preset_refuses_a_file_of_another_shape(shared_data: Path, settings: Settings) -> None:
    with pytest.raises(IngestError, match="expected Online Retail columns, missing Invoice"):
        ingest([shared_data / HILLSTROM], settings, preset="online-retail", now=NOW)
    with pytest.raises(ValueError, match="unknown preset 'nope'; use one of: cdnow"):
        ingest([shared_data / HILLSTROM], settings, preset="nope", now=NOW)
