"""After an erasure, re-ingesting the customer's old rows brings nothing back; a new
customer record (signed up after the erasure) does, and lifts the tombstone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.privacy import Tombstones, erase
from kizuna.settings import Settings
from tests.world import write_csvs

CUSTOMERS = """customer_id,signup_at,loyalty_tier,consent_profiling
A,2024-12-01,gold,true
B,2024-12-01,bronze,true
"""
ORDERS = """order_id,customer_id,ordered_at,amount
a1,A,2025-01-10T10:00:00Z,100
a2,A,2025-02-10T10:00:00Z,80
b1,B,2025-01-20T10:00:00Z,50
"""


def _ids(settings: Settings, kind: str, column: str) -> list[str]:
    lake = Lake(settings)
    rows = connect(settings).execute(f"SELECT {column} FROM {lake.relation_sql(kind)} ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def test_old_rows_stay_out_and_a_new_customer_record_lifts_the_tombstone(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")
    old = write_csvs(tmp_path / "old", customers=CUSTOMERS, orders=ORDERS)
    ingest([old], settings)
    report = erase(settings, ["A"])
    assert report.erased == 1
    assert _ids(settings, "customers", "customer_id") == ["B"]

    again = ingest([old], settings)
    assert again.kinds["customers"].erased == 1 and again.kinds["orders"].erased == 2
    assert _ids(settings, "customers", "customer_id") == ["B"]
    assert _ids(settings, "orders", "order_id") == ["b1"]
    for path in settings.home_dir.rglob("*.parquet"):  # nor in quarantine, nor anywhere
        cells = pd.read_parquet(path).astype(str).to_numpy().ravel()
        assert not {"A", "a1", "a2"} & set(cells), path

    # Signed up before the erasure: still the old record, still dropped.
    stale = write_csvs(tmp_path / "stale", customers="customer_id,signup_at\nA,2025-06-01\n")
    assert ingest([stale], settings).kinds["customers"].erased == 1
    assert Tombstones(settings).erased_at("A") is not None

    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    # Seconds after the erasure would be in the future for the clock rule: pin "now".
    back = write_csvs(
        tmp_path / "back",
        customers=f"customer_id,signup_at,loyalty_tier\nA,{later},bronze\n",
        orders=f"order_id,customer_id,ordered_at,amount\nn1,A,{later},30\n",
    )
    returned = ingest([back], settings, now=datetime.now(UTC) + timedelta(minutes=1))
    assert returned.kinds["customers"].erased == 0 and returned.kinds["orders"].erased == 0
    assert _ids(settings, "customers", "customer_id") == ["A", "B"]
    assert _ids(settings, "orders", "order_id") == ["b1", "n1"]  # the old orders stay gone
    assert Tombstones(settings).erased_at("A") is None
