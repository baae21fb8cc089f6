"""Feature snapshots: exact values, no leakage, empty sources, the catalog, files, real data."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kizuna.features import catalog
from kizuna.features.compute import (
    FeatureBuildError,
    Tables,
    build_feature_files,
    compute_snapshots,
    cutoff_range,
    default_cutoff,
    snapshot_sql,
)
from kizuna.features.contracts import CONTRACTS, EVENT_TYPES
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake, empty_relation_sql
from kizuna.features.simulate import contract_schema
from kizuna.settings import Settings
from tests.conftest import NOW

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2024, 7, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def arrow(kind: str, rows: list[dict]) -> pa.Table:
    """Rows of ``kind`` as an Arrow table with the contract's schema (missing values null)."""
    schema = contract_schema(CONTRACTS[kind])
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)


def memory_tables(con: duckdb.DuckDBPyConnection, **rows: list[dict]) -> Tables:
    """Tables over in-memory rows registered on ``con``; kinds not given are empty."""
    exprs = {}
    for kind in CONTRACTS:
        if rows.get(kind):
            con.register(f"input_{kind}", arrow(kind, rows[kind]))
            exprs[kind] = f"input_{kind}"
        else:
            exprs[kind] = empty_relation_sql(kind)
    return Tables(**exprs)


def folder_tables(folder: Path, **rows: list[dict]) -> Tables:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, kind_rows in rows.items():
        pq.write_table(arrow(kind, kind_rows), folder / f"{kind}.parquet")
    return Tables.from_folder(folder)


def one(frame: pd.DataFrame, customer: str) -> pd.Series:
    rows = frame[frame["customer_id"] == customer]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# -- a hand-made customer whose every feature is worked out by hand ---------------------

CUSTOMERS = [
    {
        "customer_id": "c1",
        "signup_at": at("2024-01-01"),
        "country": "DE",
        "loyalty_tier": "gold",
        "consent_email": True,
        "consent_sms": True,
        "consent_push": False,
    },
    {"customer_id": "c2", "signup_at": at("2024-06-01")},
    {"customer_id": "c3", "signup_at": at("2024-08-01")},  # joins after t: not in the snapshot
]
ORDERS = [
    {"order_id": "o1", "customer_id": "c1", "ordered_at": at("2024-03-02T12:00"), "amount": 100.0},
    {
        "order_id": "o2",
        "customer_id": "c1",
        "ordered_at": at("2024-05-01T12:00"),
        "amount": 50.0,
        "discount_amount": 10.0,
        "offer_id": "off1",
    },
    {"order_id": "o3", "customer_id": "c1", "ordered_at": at("2024-06-10T12:00"), "amount": 30.0},
    {"order_id": "o4", "customer_id": "c1", "ordered_at": at("2024-06-10T18:00"), "amount": 20.0},
    {
        "order_id": "r1",
        "customer_id": "c1",
        "ordered_at": at("2024-06-15T12:00"),
        "amount": -15.0,
        "is_return": True,
    },
    {"order_id": "o5", "customer_id": "c1", "ordered_at": at("2024-07-05"), "amount": 999.0},
    {"order_id": "o6", "customer_id": "c5", "ordered_at": at("2024-07-02"), "amount": 5.0},
]
LINES = [
    {"order_id": "o1", "line_number": 1, "product_id": "p1", "category": "apparel",
     "quantity": 2.0, "unit_price": 30.0},
    {"order_id": "o1", "line_number": 2, "product_id": "p2", "category": "books",
     "quantity": 1.0, "unit_price": 40.0},
    {"order_id": "o2", "line_number": 1, "product_id": "p3", "category": "books",
     "quantity": 1.0, "unit_price": 50.0},
    {"order_id": "o3", "line_number": 1, "product_id": "p4", "category": "grocery",
     "quantity": 3.0, "unit_price": 10.0},
    {"order_id": "r1", "line_number": 1, "product_id": "p1", "category": "apparel",
     "quantity": -1.0, "unit_price": 15.0},
    {"order_id": "o5", "line_number": 1, "product_id": "p9", "category": "electronics",
     "quantity": 1.0, "unit_price": 999.0},
]  # fmt: skip


def event(n: int, customer: str, when: str, type_: str, value=None, channel=None) -> dict:
    return {
        "event_id": f"e{n}",
        "customer_id": customer,
        "occurred_at": at(when),
        "type": type_,
        "value": value,
        "channel": channel,
    }


EVENTS = [
    event(1, "c1", "2024-06-28T12:00", "session"),
    event(2, "c1", "2024-06-20T12:00", "session"),
    event(3, "c1", "2024-05-15T12:00", "session"),
    event(4, "c1", "2024-06-28T12:00", "page_view", 3.0),
    event(5, "c1", "2024-06-29T12:00", "page_view"),
    event(6, "c1", "2024-06-30T12:00", "email_open", channel="email"),
    event(7, "c1", "2024-03-01T12:00", "nps_response", 9.0),
    event(8, "c1", "2024-06-01T00:00", "nps_response", 4.0),
    event(9, "c1", "2024-07-02T00:00", "nps_response", 10.0),  # after t
    event(10, "c1", "2024-06-15T12:00", "unsubscribe", channel="email"),
    event(11, "c1", "2024-06-20T12:00", "complaint"),
    event(12, "c1", "2024-06-11T12:00", "review", 5.0),
    event(13, "c1", "2023-06-01T12:00", "review", 1.0),  # older than 365 days
    event(14, "c1", "2024-07-01T00:00", "csat_response", 2.0),  # exactly at t: counts
    event(15, "c4", "2024-05-01T00:00", "session"),  # no customers row, active: included
    event(16, "c1", "2024-07-03T00:00", "unsubscribe", channel="sms"),  # after t
]
EXPOSURES = [
    {"exposure_id": "x1", "customer_id": "c1", "offer_id": "off1",
     "sent_at": at("2024-04-25T12:00"), "channel": "email", "propensity": 0.5},
    {"exposure_id": "x2", "customer_id": "c1", "offer_id": None,
     "sent_at": at("2024-06-01T12:00"), "channel": "email", "propensity": 0.5},
    {"exposure_id": "x3", "customer_id": "c1", "offer_id": "off2",
     "sent_at": at("2024-06-25T12:00"), "channel": "sms", "propensity": 0.5},
]  # fmt: skip


@pytest.fixture
def hand_made() -> dict[str, pd.DataFrame]:
    con = duckdb.connect()
    tables = memory_tables(
        con,
        customers=CUSTOMERS,
        orders=ORDERS,
        order_lines=LINES,
        events=EVENTS,
        exposures=EXPOSURES,
    )
    return compute_snapshots(con, tables, [T])


def test_population_is_who_signed_up_or_was_active_by_the_cutoff(hand_made) -> None:
    for view, frame in hand_made.items():
        assert list(frame["customer_id"]) == ["c1", "c2", "c4"], view
        assert (frame["event_timestamp"] == pd.Timestamp(T)).all()
        assert str(frame["event_timestamp"].dt.tz) == "UTC"


def test_purchase_features_of_a_hand_made_customer(hand_made) -> None:
    c1 = one(hand_made["customer_purchases"], "c1")
    # Last order 2024-06-10 18:00; t = 2024-07-01 00:00.
    assert c1["days_since_last_order"] == pytest.approx(20.25)
    assert c1["last_order_epoch"] == at("2024-06-10T18:00").timestamp()
    expected_counts = {"30d": 2, "90d": 3, "180d": 4, "365d": 4, "lifetime": 4}
    assert {k: c1[f"order_count_{k}"] for k in expected_counts} == expected_counts
    expected_spend = {"30d": 50, "90d": 100, "180d": 200, "365d": 200, "lifetime": 200}
    assert {k: c1[f"spend_{k}"] for k in expected_spend} == expected_spend
    assert c1["tenure_days"] == pytest.approx(182.0)  # 2024 is a leap year
    assert c1["avg_order_value"] == pytest.approx(50.0)
    # Distinct order days 03-02, 05-01, 06-10 (two orders): gaps 60 and 40.
    assert c1["gap_mean_days"] == pytest.approx(50.0)
    assert c1["gap_median_days"] == pytest.approx(50.0)
    assert c1["gap_std_days"] == pytest.approx(math.sqrt(200.0))
    assert c1["last_gap_days"] == pytest.approx(40.0)
    assert c1["overdue_index"] == pytest.approx(20.25 / 50.0)
    assert c1["order_trend_90d"] == 3 - 1
    assert c1["spend_trend_90d"] == pytest.approx(100.0 - 100.0)
    assert c1["discount_share"] == pytest.approx(10.0 / 210.0)
    assert c1["discounted_order_share"] == pytest.approx(0.25)
    assert (c1["return_count_365d"], c1["return_amount_365d"]) == (1, 15.0)
    assert c1["return_rate"] == pytest.approx(0.25)
    # Line spend: books 90 (last 05-01 12:00), apparel 60 (03-02 12:00), grocery 30; the
    # returned line and the order after t do not count.
    assert c1["category_count_365d"] == 3
    assert (c1["top_category"], c1["second_category"]) == ("books", "apparel")
    assert c1["top_category_share"] == pytest.approx(0.5)
    assert c1["days_since_top_category"] == pytest.approx(60.5)
    assert c1["days_since_second_category"] == pytest.approx(120.5)


def test_engagement_service_and_offer_features_of_a_hand_made_customer(hand_made) -> None:
    eng = one(hand_made["customer_engagement"], "c1")
    assert (eng["sessions_7d"], eng["sessions_30d"], eng["sessions_90d"]) == (1, 2, 3)
    assert eng["sessions_trend_30d"] == 2 - 1
    assert eng["page_views_7d"] == 3 + 1  # an empty value is one page
    assert (eng["email_opens_7d"], eng["email_opens_trend_30d"]) == (1, 1)
    assert eng["days_since_last_engagement"] == pytest.approx(0.5)
    assert eng["unsubscribes_lifetime"] == 1
    assert (eng["unsubscribed_email"], eng["unsubscribed_sms"]) == (True, False)

    svc = one(hand_made["customer_service"], "c1")
    assert (svc["last_nps"], svc["days_since_last_nps"]) == (4.0, 30.0)
    assert (svc["last_csat"], svc["days_since_last_csat"]) == (2.0, 0.0)
    assert (svc["complaints_30d"], svc["support_tickets_90d"]) == (1, 0)
    assert (svc["reviews_365d"], svc["avg_review_365d"]) == (1, 5.0)

    off = one(hand_made["customer_offers"], "c1")
    assert (off["exposures_30d"], off["exposures_90d"], off["exposures_365d"]) == (1, 2, 2)
    assert (off["control_assignments_365d"], off["redemptions_365d"]) == (1, 1)
    assert off["offer_response_rate_365d"] == pytest.approx(0.5)
    assert off["days_since_last_contact"] == pytest.approx(5.5)

    prof = one(hand_made["customer_profile"], "c1")
    assert (prof["loyalty_tier"], prof["country"]) == ("gold", "DE")
    # Email consent was given, then withdrawn before t; the sms unsubscribe is after t.
    assert (prof["consent_email"], prof["consent_sms"], prof["consent_push"]) == (
        False,
        True,
        False,
    )
    assert prof["consent_profiling"]


# Features that are null, not 0, for a customer without data of their kind.
NULL_WITHOUT_DATA = {
    "last_order_epoch",
    "tenure_days",
    "avg_order_value",
    "gap_mean_days",
    "gap_median_days",
    "gap_std_days",
    "last_gap_days",
    "overdue_index",
    "last_nps",
    "last_csat",
    "avg_review_365d",
    "loyalty_tier",
    "country",
}


def test_customers_without_data_get_zero_counts_and_null_recency(hand_made) -> None:
    # c2 signed up and did nothing; c4 has one session and no customers row.
    for customer in ("c2", "c4"):
        for view, frame in hand_made.items():
            row = one(frame, customer)
            for spec in catalog.by_view(view):
                value = row[spec.name]
                if spec.name in ("days_since_last_engagement", "sessions_90d") and customer == "c4":
                    continue  # c4's session
                if spec.name == "tenure_days" and customer == "c2":
                    assert value == pytest.approx(30.0)  # from signup 2024-06-01
                elif spec.name.startswith("days_since") or spec.name in NULL_WITHOUT_DATA:
                    assert pd.isna(value), (customer, spec.name)
                elif spec.name == "rfm_segment":
                    assert value == catalog.NO_PURCHASES
                elif spec.type == "string":
                    assert pd.isna(value), (customer, spec.name)
                elif spec.name == "consent_profiling":
                    assert value  # unknown means allowed
                else:  # counts, sums, shares, scores 0; flags and channel consents false
                    assert not value, (customer, spec.name)
    c4 = one(hand_made["customer_engagement"], "c4")
    assert (c4["sessions_90d"], c4["days_since_last_engagement"]) == (1, 61.0)


def test_a_lake_of_orders_only_computes_every_view(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,amount\no1,c1,2024-01-01,10\no2,c1,2024-01-11,30\n"
    )
    ingest([tmp_path / "orders.csv"], settings, now=NOW)
    tables = Tables.from_lake(Lake(settings))
    frames = compute_snapshots(connect(settings), tables, [datetime(2024, 2, 1, tzinfo=UTC)])
    assert {v: len(f) for v, f in frames.items()} == dict.fromkeys(catalog.VIEWS, 1)
    purchases = frames["customer_purchases"].iloc[0]
    assert (purchases["order_count_lifetime"], purchases["last_gap_days"]) == (2, 10.0)
    assert purchases["category_count_365d"] == 0 and pd.isna(purchases["top_category"])
    assert frames["customer_engagement"].iloc[0]["sessions_90d"] == 0
    assert pd.isna(frames["customer_engagement"].iloc[0]["days_since_last_engagement"])
    assert pd.isna(frames["customer_service"].iloc[0]["last_nps"])
    assert frames["customer_offers"].iloc[0]["offer_response_rate_365d"] == 0
    assert pd.isna(frames["customer_profile"].iloc[0]["country"])


def test_snapshots_of_empty_tables_are_empty_with_the_catalog_columns() -> None:
    con = duckdb.connect()
    frames = compute_snapshots(con, memory_tables(con), [T])
    for view, frame in frames.items():
        assert frame.empty
        assert list(frame.columns) == ["customer_id", "event_timestamp"] + [
            f.name for f in catalog.by_view(view)
        ]


# -- RFM ------------------------------------------------------------------------------------


def test_rfm_scores_are_quintiles_and_ties_share_a_score() -> None:
    orders = []
    for i in range(10):  # customer b<i>: i + 1 orders of 10, the last one i days after 06-01
        for k in range(i + 1):
            orders.append(
                {
                    "order_id": f"b{i}-{k}",
                    "customer_id": f"b{i}",
                    "ordered_at": at("2024-06-01") + timedelta(days=i - k),
                    "amount": 10.0,
                }
            )
    orders += [{**o, "order_id": "twin-" + o["order_id"], "customer_id": "twin"} for o in orders
               if o["customer_id"] == "b9"]  # fmt: skip
    con = duckdb.connect()
    frame = compute_snapshots(con, memory_tables(con, orders=orders), [T])["customer_profile"]
    frame = frame.set_index("customer_id")
    # 11 buyers ranked ascending: b0 rank 1 ... b8 rank 9, b9 and twin share rank 10.
    expected = [1 + (5 * i) // 11 for i in range(10)]
    for score in ("rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score"):
        assert [frame.loc[f"b{i}", score] for i in range(10)] == expected
        assert frame.loc["twin", score] == frame.loc["b9", score] == 5
    segments = [frame.loc[f"b{i}", "rfm_segment"] for i in (0, 3, 5, 7, 9)]
    assert segments == ["Lost", "Hibernating", "Need attention", "Loyal", "Champions"]


def test_rfm_segments_cover_every_score_pair_once() -> None:
    for r in range(1, 6):
        for fm in range(1, 6):
            named = [n for n, (rs, fms) in catalog.RFM_SEGMENTS.items() if r in rs and fm in fms]
            assert len(named) == 1, (r, fm, named)
    assert len(catalog.RFM_SEGMENTS) == 11


# -- no leakage -------------------------------------------------------------------------------

HOURS = 24 * 400
IDS = ("c0", "c1", "c2")


def _event_value(type_: str, draw) -> float | None:
    low_high = {"nps_response": (0, 10), "csat_response": (1, 5), "review": (1, 5)}
    if type_ in low_high:
        return float(draw(st.integers(*low_high[type_])))
    return float(draw(st.integers(1, 5))) if type_ == "page_view" else None


@st.composite
def activity(draw, before: bool, prefix: str) -> dict[str, list[dict]]:
    """Random orders, lines, events and exposures at or before t (or strictly after)."""
    hours = st.integers(-HOURS, 0) if before else st.integers(1, HOURS)
    # After t also brings customers never seen before t.
    who = st.sampled_from(IDS if before else (*IDS, "late1", "late2"))
    out: dict[str, list[dict]] = {"orders": [], "order_lines": [], "events": [], "exposures": []}
    for n in range(draw(st.integers(0, 8))):
        returned = draw(st.booleans())
        amount = float(draw(st.integers(1, 200)))
        order_id = f"{prefix}o{n}"
        out["orders"].append(
            {
                "order_id": order_id,
                "customer_id": draw(who),
                "ordered_at": T + timedelta(hours=draw(hours)),
                "amount": -amount if returned else amount,
                "is_return": returned,
                "discount_amount": float(draw(st.integers(0, 20))),
                "offer_id": draw(st.sampled_from([None, "off1"])),
            }
        )
        for k in range(draw(st.integers(0, 2))):
            out["order_lines"].append(
                {
                    "order_id": order_id,
                    "line_number": k + 1,
                    "product_id": "p",
                    "category": draw(st.sampled_from(["books", "toys", "pet", None])),
                    "quantity": -1.0 if returned else 1.0,
                    "unit_price": float(draw(st.integers(0, 50))),
                }
            )
    for n in range(draw(st.integers(0, 12))):
        type_ = draw(st.sampled_from(EVENT_TYPES))
        out["events"].append(
            {
                "event_id": f"{prefix}e{n}",
                "customer_id": draw(who),
                "occurred_at": T + timedelta(hours=draw(hours)),
                "type": type_,
                "value": _event_value(type_, draw),
                "channel": draw(st.sampled_from([None, "email", "sms", "push"])),
            }
        )
    for n in range(draw(st.integers(0, 6))):
        out["exposures"].append(
            {
                "exposure_id": f"{prefix}x{n}",
                "customer_id": draw(who),
                "offer_id": draw(st.sampled_from([None, "off1", "off2"])),
                "sent_at": T + timedelta(hours=draw(hours)),
                "channel": "email",
                "propensity": 0.5,
            }
        )
    return out


def _snapshot(parts: list[dict[str, list[dict]]], customers: list[dict]) -> dict:
    rows: dict[str, list[dict]] = {"customers": customers}
    for part in parts:
        for kind, kind_rows in part.items():
            rows.setdefault(kind, []).extend(kind_rows)
    con = duckdb.connect()
    return compute_snapshots(con, memory_tables(con, **rows), [T])


BASE_CUSTOMERS = [
    {"customer_id": "c0", "signup_at": at("2023-01-01"), "consent_email": True},
    {"customer_id": "c1", "consent_sms": True},
]
LATE_CUSTOMERS = [{"customer_id": "late1", "signup_at": at("2024-07-01T00:00:01")}]


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=activity(before=True, prefix="b"),
    after=activity(before=False, prefix="a"),
    changed=activity(before=False, prefix="a"),
)
def test_rows_after_the_cutoff_never_change_a_snapshot(before, after, changed) -> None:
    alone = _snapshot([before], BASE_CUSTOMERS)
    with_after = _snapshot([before, after], BASE_CUSTOMERS + LATE_CUSTOMERS)
    with_changed = _snapshot([before, changed], BASE_CUSTOMERS + LATE_CUSTOMERS)
    for view in catalog.VIEWS:
        pd.testing.assert_frame_equal(alone[view], with_after[view])
        pd.testing.assert_frame_equal(alone[view], with_changed[view])


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=activity(before=True, prefix="b"),
    hours_before=st.integers(0, 24 * 29),
    amount=st.integers(1, 500),
)
def test_rows_at_or_before_the_cutoff_are_counted(before, hours_before, amount) -> None:
    when = T - timedelta(hours=hours_before)  # hours_before = 0 is exactly at t
    extra = {
        "orders": [
            {"order_id": "new", "customer_id": "c0", "ordered_at": when, "amount": float(amount)}
        ],
        "events": [
            {"event_id": "new", "customer_id": "c0", "occurred_at": when, "type": "session"}
        ],
    }
    base = _snapshot([before], BASE_CUSTOMERS)
    more = _snapshot([before, extra], BASE_CUSTOMERS)
    old, new = one(base["customer_purchases"], "c0"), one(more["customer_purchases"], "c0")
    assert new["order_count_30d"] == old["order_count_30d"] + 1
    assert new["order_count_lifetime"] == old["order_count_lifetime"] + 1
    assert new["spend_lifetime"] == pytest.approx(old["spend_lifetime"] + amount)
    latest = hours_before / 24
    if not pd.isna(old["days_since_last_order"]):
        latest = min(latest, old["days_since_last_order"])
    assert new["days_since_last_order"] == pytest.approx(latest)
    old_e, new_e = one(base["customer_engagement"], "c0"), one(more["customer_engagement"], "c0")
    assert new_e["sessions_30d"] == old_e["sessions_30d"] + 1


# -- the catalog ----------------------------------------------------------------------------


def test_every_feature_is_documented_once() -> None:
    names = [f.name for f in catalog.FEATURES]
    assert len(names) == len(set(names))
    for f in catalog.FEATURES:
        assert f.view in catalog.VIEWS
        assert f.type in ("int", "float", "string", "bool")
        assert f.meaning.strip() and f.window.strip() and f.source.strip(), f
    counts = {v: len(catalog.by_view(v)) for v in catalog.VIEWS}
    assert counts == {
        "customer_purchases": 34,
        "customer_engagement": 22,
        "customer_service": 10,
        "customer_offers": 7,
        "customer_profile": 10,
    }


def test_snapshot_columns_and_dtypes_follow_the_catalog(hand_made) -> None:
    dtypes = {"int": "int64", "float": "float64", "string": "object", "bool": "bool"}
    for view, frame in hand_made.items():
        specs = catalog.by_view(view)
        assert list(frame.columns) == ["customer_id", "event_timestamp"] + [f.name for f in specs]
        assert {f.name: str(frame[f.name].dtype) for f in specs} == {
            f.name: dtypes[f.type] for f in specs
        }


def test_docs_features_md_is_generated_from_the_catalog() -> None:
    assert (ROOT / "docs" / "features.md").read_text() == catalog.markdown(), (
        "docs/features.md is out of date: write catalog.markdown() to it"
    )


def test_customer_filter_restricts_rows_but_not_the_rfm_ranking() -> None:
    con = duckdb.connect()
    tables = memory_tables(
        con, customers=CUSTOMERS, orders=ORDERS, events=EVENTS, exposures=EXPOSURES
    )
    everyone = compute_snapshots(con, tables, [T])
    some = compute_snapshots(con, tables, [T], customer_ids=["c1", "it's-unknown"])
    for view in catalog.VIEWS:
        expected = everyone[view][everyone[view]["customer_id"] == "c1"].reset_index(drop=True)
        pd.testing.assert_frame_equal(some[view], expected)
    assert all(f.empty for f in compute_snapshots(con, tables, [T], customer_ids=[]).values())


def test_snapshot_sql_does_not_depend_on_the_session_time_zone() -> None:
    # 06-02 03:00 UTC is still 06-01 in Los Angeles: the order days must be taken in UTC.
    orders = [
        {"order_id": "a", "customer_id": "c1", "ordered_at": at("2024-06-01T10:00"), "amount": 1.0},
        {"order_id": "b", "customer_id": "c1", "ordered_at": at("2024-06-02T03:00"), "amount": 1.0},
    ]
    cutoff = datetime(2024, 6, 3, 1, 30, tzinfo=UTC)
    for zone in ("UTC", "America/Los_Angeles"):
        con = duckdb.connect()
        con.execute(f"SET TimeZone = '{zone}'")
        sql = snapshot_sql(memory_tables(con, orders=orders), cutoff)["customer_purchases"]
        row = con.execute(f"SELECT last_gap_days, days_since_last_order FROM ({sql})").fetchone()
        assert row == pytest.approx((1.0, 22.5 / 24)), zone


# -- files -------------------------------------------------------------------------------------


def test_build_feature_files_stacks_cutoffs_and_replaces_rebuilt_ones(
    settings: Settings, tmp_path: Path
) -> None:
    first, second = T, T + timedelta(days=30)
    tables = folder_tables(tmp_path / "v1", customers=CUSTOMERS, orders=ORDERS, events=EVENTS)
    steps: list[tuple[int, int]] = []
    paths = build_feature_files(
        settings, [second, first], tables, lambda d, t: steps.append((d, t))
    )
    assert steps[-1] == (10, 10) and len(steps) == 10
    assert set(paths) == set(catalog.VIEWS)
    stacked = pd.read_parquet(paths["customer_purchases"])
    counts = stacked.groupby("event_timestamp")["customer_id"].count()
    # By the second cutoff c5 has ordered (07-02); c3 joins only on 08-01.
    assert counts.to_dict() == {pd.Timestamp(first): 3, pd.Timestamp(second): 4}
    expected = compute_snapshots(duckdb.connect(), tables, [first, second])["customer_purchases"]
    got = stacked.sort_values(["event_timestamp", "customer_id"], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)

    # A late order lands before the second cutoff; rebuilding that cutoff replaces its rows.
    late = {**ORDERS[0], "order_id": "late", "ordered_at": at("2024-07-20"), "amount": 1.0}
    tables2 = folder_tables(
        tmp_path / "v2", customers=CUSTOMERS, orders=[*ORDERS, late], events=EVENTS
    )
    build_feature_files(settings, [second], tables2)
    rebuilt = pd.read_parquet(paths["customer_purchases"])
    c1 = rebuilt[rebuilt["customer_id"] == "c1"].set_index("event_timestamp")
    assert c1["order_count_lifetime"].to_dict() == {pd.Timestamp(first): 4, pd.Timestamp(second): 6}
    assert len(rebuilt) == len(stacked)
    assert not list(paths["customer_purchases"].parent.glob(".*"))  # no temporary files left
    assert not list(paths["customer_purchases"].parent.parent.glob(".build-*"))


def test_build_feature_files_needs_a_cutoff(settings: Settings) -> None:
    with pytest.raises(FeatureBuildError, match="no cutoffs"):
        build_feature_files(settings, [])


def test_cutoff_range_and_default_cutoff() -> None:
    cutoffs = cutoff_range(date(2024, 1, 1), date(2024, 1, 29), timedelta(days=7))
    assert [c.day for c in cutoffs] == [1, 8, 15, 22, 29]
    assert all(c.tzinfo is UTC and c.hour == 0 for c in cutoffs)
    with pytest.raises(FeatureBuildError, match="whole days"):
        cutoff_range(date(2024, 1, 1), date(2024, 2, 1), timedelta(hours=12))
    con = duckdb.connect()
    tables = memory_tables(con, orders=ORDERS, events=EVENTS)
    assert default_cutoff(tables, con) == datetime(2024, 7, 6, tzinfo=UTC)  # o5 on 07-05
    with pytest.raises(FeatureBuildError, match="no orders or events"):
        default_cutoff(memory_tables(duckdb.connect()))


# -- real data --------------------------------------------------------------------------------


@pytest.mark.shared
def test_cdnow_snapshot_matches_the_raw_file(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "cdnow" / "CDNOW_master.txt"
    settings = Settings(home=tmp_path / "home")
    ingest([path], settings, preset="cdnow", now=NOW)
    con = connect(settings)
    cutoff = datetime(1998, 7, 1, tzinfo=UTC)
    frames = compute_snapshots(con, Tables.from_lake(Lake(settings)), [cutoff])
    purchases = frames["customer_purchases"]
    assert len(purchases) == 23_570

    raw = pd.read_csv(path, sep=r"\s+", dtype={"customer_id": str})
    assert len(raw) == 69_659
    per_customer = raw.groupby("customer_id").size()
    assert (purchases["order_count_lifetime"] >= 2).mean() == pytest.approx(
        (per_customer >= 2).mean(), abs=1e-12
    )
    assert (
        abs(purchases["spend_lifetime"].sum() - raw["dollar_value"].sum()) / len(purchases) < 0.01
    )
    assert purchases["days_since_last_order"].notna().all()
    assert (purchases["days_since_last_order"] > 0).all()
    # The cohort bought first in Q1 1997; the data end 1998-06-30.
    assert purchases["tenure_days"].between(456, 547).all()
    # Gaps are between distinct purchase days: two rows on one day are one occasion.
    days_per_customer = raw.groupby("customer_id")["date"].nunique()
    gaps = purchases["gap_median_days"]
    assert gaps.notna().sum() == (days_per_customer >= 2).sum()
    assert (gaps.dropna() >= 1).all()
    profile = frames["customer_profile"]
    assert profile["rfm_segment"].isin(catalog.RFM_SEGMENTS).all()
    assert set(profile["rfm_recency_score"]) == {1, 2, 3, 4, 5}


@pytest.mark.shared
def test_online_retail_snapshot_has_returns_and_no_categories(
    shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "online-retail-ii" / "online_retail_II_2009-12_2010-12.csv.gz"
    settings = Settings(home=tmp_path / "home")
    ingest([path], settings, preset="online-retail", now=NOW)
    con = connect(settings)
    frames = compute_snapshots(
        con, Tables.from_lake(Lake(settings)), [datetime(2010, 9, 9, tzinfo=UTC)]
    )
    purchases = frames["customer_purchases"]
    # Customers without a signup date join the population with their first invoice:
    # the snapshot holds exactly those who had one by the cutoff, each with some history.
    first_seen = Lake(settings).read("orders").groupby("customer_id")["ordered_at"].min()
    assert len(purchases) == (first_seen <= pd.Timestamp("2010-09-09", tz="UTC")).sum() < 4_383
    active = purchases[(purchases["order_count_lifetime"] + purchases["return_count_365d"]) > 0]
    assert len(active) == len(purchases)
    assert (purchases["return_count_365d"] > 0).any()
    assert (purchases["return_amount_365d"] >= 0).all()
    assert (purchases.loc[purchases["return_count_365d"] > 0, "return_amount_365d"] > 0).all()
    assert purchases["top_category"].isna().all() and (purchases["category_count_365d"] == 0).all()
    assert (purchases["days_since_last_order"].dropna() >= 0).all()
    assert np.isfinite(purchases["spend_lifetime"]).all()


def test_the_order_rows_arrive_in_changes_no_bit_of_a_snapshot() -> None:
    # Sums of cents in another order differ in the last bits (0.1 + 0.2 != 0.2 + 0.1);
    # DuckDB's threads add up in whatever order they finish, and LightGBM's bins moved
    # with those bits: a retrained model changed from run to run.
    rng = np.random.default_rng(3)
    customers = [{"customer_id": f"c{n}", "signup_at": at("2023-01-01")} for n in range(30)]
    orders, lines = [], []
    for n in range(1_500):
        order_id, cents = f"o{n}", rng.integers(1, 20_000, size=3)
        orders.append(
            {
                "order_id": order_id,
                "customer_id": f"c{n % 30}",
                "ordered_at": T - timedelta(hours=int(rng.integers(1, 24 * 400))),
                "amount": float(cents.sum()) / 100,
                "discount_amount": float(cents[0] % 500) / 100,
            }
        )
        lines += [
            {
                "order_id": order_id,
                "line_number": k + 1,
                "product_id": "p",
                "category": ["books", "toys"][k % 2],
                "quantity": 1.0,
                "unit_price": float(c) / 100,
            }
            for k, c in enumerate(cents)
        ]
    snapshots = [
        _snapshot([{"orders": o, "order_lines": li}], customers)
        for o, li in [(orders, lines), (orders[::-1], lines[::-1])]
    ]
    for view in catalog.VIEWS:
        pd.testing.assert_frame_equal(snapshots[0][view], snapshots[1][view], check_exact=True)
