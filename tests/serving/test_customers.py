"""The customer view's history (serving/customers.py) and the answers that follow the data
(serving/refresh.py): what a page reads while the start-up warm-up is still loading."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kizuna.serving.customers import CustomerHistory
from kizuna.serving.refresh import Refreshing
from kizuna.settings import Settings
from tests.world import ingest_csvs

CUSTOMERS = """customer_id,signup_at,loyalty_tier,consent_profiling
A,2024-12-01,gold,true
B,2024-12-01,bronze,true
"""
ORDERS = """order_id,customer_id,ordered_at,amount,is_return
a1,A,2025-01-10T10:00:00Z,100,
a2,A,2025-02-10T10:00:00Z,40,
b1,B,2025-01-20T10:00:00Z,50,
"""
LINES = """order_id,product_id,category,quantity,unit_price
a1,p1,coffee,2,30
a1,p2,tea,1,40
a2,p1,coffee,1,40
b1,p3,tea,1,50
"""
# Two visits and an e-mail opened on one day fold into one engagement line.
EVENTS = """event_id,customer_id,occurred_at,type,value
e1,A,2025-02-11T08:00:00Z,session,
e2,A,2025-02-11T09:00:00Z,session,
e3,A,2025-02-11T09:30:00Z,email_open,
e4,A,2025-02-12T10:00:00Z,nps_response,9
"""


@pytest.fixture
def lake(tmp_path: Path, settings: Settings) -> Settings:
    ingest_csvs(
        tmp_path / "in",
        settings,
        customers=CUSTOMERS,
        orders=ORDERS,
        order_lines=LINES,
        events=EVENTS,
    )
    return settings


def _entries(history: CustomerHistory, customer_id: str) -> list[tuple]:
    frame = history.timeline(customer_id)
    return [
        (str(r.happened_at)[:16], r.kind, r.amount if r.amount == r.amount else None, r.detail)
        for r in frame.itertuples()
    ]


def test_timeline_is_newest_first_with_categories_and_engagement_folded(lake: Settings) -> None:
    history = CustomerHistory(lake)
    history.warm()
    assert _entries(history, "A") == [
        ("2025-02-12 10:00", "nps_response", None, None),
        ("2025-02-11 09:30", "engagement", None, "email_open=1,session=2"),
        ("2025-02-10 10:00", "order", 40.0, "coffee"),
        ("2025-01-10 10:00", "order", 100.0, "coffee, tea"),
    ]
    assert history.profile("A")["loyalty_tier"] == "gold"
    assert history.profile("nobody") is None


def test_a_page_during_the_first_load_reads_its_customer_from_the_lake(lake: Settings) -> None:
    loaded = CustomerHistory(lake)
    loaded.warm()
    expected, profile = _entries(loaded, "A"), loaded.profile("A")
    history = CustomerHistory(lake)
    with history._lock:  # the start-up warm-up is loading every customer
        assert history._con is None
        assert _entries(history, "A") == expected
        assert history.profile("A") == profile
        assert history.profile("nobody") is None
        assert len(history._single) == 2  # A and nobody, each read once
    history._loader.join(30)  # the reads started the load in the background
    assert history._con is not None
    assert _entries(history, "A") == expected  # then from the loaded tables
    assert history._single == {}  # the one-customer reads are dropped once loaded


def test_a_new_file_reloads_only_its_customers(lake: Settings, tmp_path: Path) -> None:
    history = CustomerHistory(lake)
    history.warm()
    before_b = _entries(history, "B")
    ingest_csvs(
        tmp_path / "more",
        lake,
        orders="order_id,customer_id,ordered_at,amount,is_return\na3,A,2025-03-01T10:00:00Z,25,\n",
    )
    assert _entries(history, "A")[0] == ("2025-03-01 10:00", "order", 25.0, None)
    assert _entries(history, "B") == before_b
    assert len(_entries(history, "A")) == 5


def test_refreshing_can_answer_none_instead_of_waiting_for_the_first_compute() -> None:
    started, release = threading.Event(), threading.Event()

    def compute() -> str:
        started.set()
        release.wait(10)
        return "figures"

    answer = Refreshing(compute, lambda: 1, "test")
    warmer = threading.Thread(target=answer.get)
    warmer.start()
    assert started.wait(10)
    assert answer.get(wait=False) is None  # a page says "being computed"
    release.set()
    warmer.join(10)
    assert answer.get(wait=False) == "figures"
    assert answer.get() == "figures"


def test_refreshing_without_a_compute_in_flight_computes_even_when_not_waiting() -> None:
    answer = Refreshing(lambda: 42, lambda: 1, "test")
    assert answer.get(wait=False) == 42
