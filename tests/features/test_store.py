"""The Feast repository end to end: apply, point-in-time frames, parity, real-time pushes.

One real Feast repository (file registry, DuckDB offline store, SQLite online store) over
a small simulated retailer, built once for the module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kizuna.features.catalog import FEATURES, VIEWS, by_view
from kizuna.features.compute import build_feature_files
from kizuna.features.ingest import ingest
from kizuna.features.realtime import push_updates
from kizuna.features.simulate import simulate
from kizuna.features.store import (
    SCHEMA_FILE,
    apply,
    catalog_schema,
    materialize,
    online_features,
    open_store,
    service_features,
    training_frame,
)
from kizuna.settings import Settings
from tests.conftest import NOW

CUTOFFS = [
    datetime(2024, 6, 1, tzinfo=UTC),
    datetime(2024, 7, 1, tzinfo=UTC),
    datetime(2024, 8, 1, tzinfo=UTC),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("feast")
    settings = Settings(home=root / "home")
    summary = simulate(root / "sim", customers=600, days=240, seed=11)
    ingest([summary.out], settings, now=NOW)
    build_feature_files(settings, CUTOFFS)
    apply(settings)
    materialize(settings)
    return settings


def snapshot(settings: Settings, view: str) -> pd.DataFrame:
    return pd.read_parquet(settings.home_dir / "features" / "snapshots" / f"{view}.parquet")


def assert_same(a: pd.Series, b: pd.Series, name: str) -> None:
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-6, err_msg=name)
    else:
        assert (
            a.astype(object).where(a.notna(), None).tolist()
            == b.astype(object).where(b.notna(), None).tolist()
        ), name


def test_schema_json_is_the_catalog() -> None:
    import json

    assert json.loads(SCHEMA_FILE.read_text()) == catalog_schema(), "run: kizuna features apply"


def test_each_service_serves_its_views_and_the_request_time_feature(repo: Settings) -> None:
    store = open_store(repo)
    churn = service_features(store, "churn_v1")
    assert len(churn) == len(FEATURES) + 1
    assert "request_time_features:days_since_last_order_now" in churn
    repurchase = service_features(store, "repurchase_v1")
    assert {r.split(":")[0] for r in repurchase} == {
        "customer_purchases",
        "customer_engagement",
        "customer_profile",
        "request_time_features",
    }
    names = {s.name for s in store.list_feature_services()}
    assert names == {"churn_v1", "repurchase_v1", "value_v1", "offers_v1"}
    for view in VIEWS:
        fv = store.get_feature_view(view)
        assert fv.ttl == timedelta(days=35)
        assert [f.name for f in fv.features] == [f.name for f in by_view(view)]


def test_online_values_equal_the_latest_offline_snapshot(repo: Settings) -> None:
    latest = CUTOFFS[-1]
    for view in VIEWS:
        offline = snapshot(repo, view)
        offline = offline[offline["event_timestamp"] == pd.Timestamp(latest)]
        offline = offline.sort_values("customer_id").reset_index(drop=True)
        store = open_store(repo)
        refs = [f"{view}:{f.name}" for f in by_view(view)]
        online = store.get_online_features(
            features=refs, entity_rows=[{"customer_id": c} for c in offline["customer_id"]]
        ).to_df()
        assert len(online) == len(offline) > 300
        for f in by_view(view):
            assert_same(online[f.name], offline[f.name], f"{view}.{f.name}")


def test_training_frames_are_point_in_time(repo: Settings) -> None:
    purchases = snapshot(repo, "customer_purchases")
    customers = (
        purchases.loc[purchases["event_timestamp"] == pd.Timestamp(CUTOFFS[0]), "customer_id"]
        .head(50)
        .tolist()
    )
    # At each cutoff, and two weeks after the first: the latest snapshot at or before it.
    asked = [CUTOFFS[0], CUTOFFS[0] + timedelta(days=14), CUTOFFS[1]]
    entities = pd.DataFrame(
        [(c, t) for c in customers for t in asked], columns=["customer_id", "event_timestamp"]
    )
    frame = training_frame(repo, entities, "churn_v1")
    assert len(frame) == len(entities)
    expected_cutoff = {asked[0]: CUTOFFS[0], asked[1]: CUTOFFS[0], asked[2]: CUTOFFS[1]}
    snap = purchases.set_index(["customer_id", "event_timestamp"])
    for t, cutoff in expected_cutoff.items():
        got = frame[frame["event_timestamp"] == pd.Timestamp(t)].set_index("customer_id")
        want = snap.xs(pd.Timestamp(cutoff), level="event_timestamp").loc[got.index]
        assert_same(got["order_count_lifetime"], want["order_count_lifetime"], str(t))
        assert_same(got["spend_365d"], want["spend_365d"], str(t))
    # The request-time feature moves with the request: 14 more days since the last order.
    first = frame[frame["event_timestamp"] == pd.Timestamp(asked[0])].set_index("customer_id")
    later = frame[frame["event_timestamp"] == pd.Timestamp(asked[1])].set_index("customer_id")
    bought = first["days_since_last_order"].notna()
    now_later = later.loc[bought, "days_since_last_order_now"]
    np.testing.assert_allclose(now_later - first.loc[bought, "days_since_last_order_now"], 14.0)


def test_a_push_moves_the_online_values_it_should(repo: Settings) -> None:
    purchases = snapshot(repo, "customer_purchases")
    latest = purchases[purchases["event_timestamp"] == pd.Timestamp(CUTOFFS[-1])]
    buyer = latest.sort_values("order_count_lifetime").iloc[-1]
    bystander = latest.sort_values("order_count_lifetime").iloc[-2]
    moment = CUTOFFS[-1] + timedelta(days=3)
    orders = pd.DataFrame(
        {
            "order_id": ["rt-1"],
            "customer_id": [buyer["customer_id"]],
            "ordered_at": [moment - timedelta(hours=1)],
            "amount": [42.0],
        }
    )
    events = pd.DataFrame(
        {
            "event_id": ["rt-e1", "rt-e2"],
            "customer_id": [buyer["customer_id"]] * 2,
            "occurred_at": [moment - timedelta(hours=2)] * 2,
            "type": ["session", "complaint"],
        }
    )
    report = push_updates(repo, orders=orders, events=events, as_of=moment)
    assert report.customers == [buyer["customer_id"]]
    assert report.ingest.kinds["orders"].accepted == 1
    online = online_features(
        repo, [buyer["customer_id"], bystander["customer_id"]], "churn_v1", at=moment
    ).set_index("customer_id")
    row = online.loc[buyer["customer_id"]]
    assert row["order_count_lifetime"] == buyer["order_count_lifetime"] + 1
    assert row["days_since_last_order"] == pytest.approx(1 / 24, abs=1e-6)
    assert row["complaints_30d"] >= 1
    assert row["days_since_last_order_now"] == pytest.approx(1 / 24, abs=1e-3)
    # Someone else's values did not move.
    other = online.loc[bystander["customer_id"]]
    assert other["order_count_lifetime"] == bystander["order_count_lifetime"]
    # The offline log has the pushed rows.
    logged = pd.read_parquet(report.log_files[0])
    assert logged["customer_id"].tolist() == [buyer["customer_id"]]
    # Replaying the same events lands nothing new and pushes the same values.
    again = push_updates(repo, orders=orders, events=events, as_of=moment)
    assert again.ingest.kinds["orders"].accepted == 0
    assert again.ingest.kinds["orders"].already_in_lake == 1


def test_incremental_materialization_loads_a_newer_snapshot(repo: Settings) -> None:
    newer = CUTOFFS[-1] + timedelta(days=7)
    build_feature_files(repo, [newer])
    materialize(repo, incremental=True)
    purchases = snapshot(repo, "customer_purchases")
    latest = purchases[purchases["event_timestamp"] == pd.Timestamp(newer)]
    latest = latest.sort_values("customer_id").head(100)
    online = online_features(repo, latest["customer_id"].tolist(), "value_v1", at=newer)
    online = online.set_index("customer_id").loc[latest["customer_id"]]
    assert_same(
        online["days_since_last_order"],
        latest["days_since_last_order"].set_axis(online.index),
        "days_since_last_order",
    )
    assert_same(
        online["spend_lifetime"], latest["spend_lifetime"].set_axis(online.index), "spend_lifetime"
    )


def test_pushed_order_lines_refresh_their_orders_customer(repo: Settings) -> None:
    from kizuna.features.lake import Lake

    order = Lake(repo).read("orders").sort_values("order_id").iloc[0]
    lines = pd.DataFrame(
        {
            "order_id": [order["order_id"]],
            "line_number": [99],
            "product_id": ["late-line"],
            "quantity": [1.0],
            "unit_price": [2.5],
        }
    )
    report = push_updates(repo, order_lines=lines, as_of=CUTOFFS[-1] + timedelta(days=3))
    assert report.ingest.kinds["order_lines"].accepted == 1
    assert report.customers == [order["customer_id"]]
