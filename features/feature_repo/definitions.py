"""Kizuna's Feast definitions: entity, sources, feature views and one service per model.

This repository imports only feast and the standard library. The feature columns come
from ``schema.json`` beside this file, which ``kizuna features apply`` writes from the
feature catalog (kizuna.features.catalog); a test keeps the two in sync.

Read it like a glossary:

* ``customer`` is the entity: one retailer customer, joined on ``customer_id``.
* Each ``<view>_source`` is a Parquet file of snapshots: one row per customer and cutoff,
  ``event_timestamp`` being the cutoff; every value uses data at or before it only.
* Each ``<view>_push`` lets the real-time path write fresher rows for a few customers.
* Each feature view serves one family of features. Its TTL says how old a snapshot may be
  before it no longer describes the customer: snapshots are rebuilt weekly by default, so
  35 days leaves room for a missed run or two without serving stale values silently.
* ``request_time`` is the moment of a request; ``request_time_features`` turns snapshot
  values into values at that moment (days since the last order *now*).
* ``churn_v1`` ... ``offers_v1``: the versioned set of features each model reads, for
  training and serving alike.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int64, String

SCHEMA_FILE = Path(__file__).with_name("schema.json")
SNAPSHOT_TTL = timedelta(days=35)
FEAST_TYPES = {"int": Int64, "float": Float64, "string": String, "bool": Bool}

# Which families of features each model reads. A new model version gets a new service.
SERVICES: dict[str, list[str]] = {
    "churn_v1": [
        "customer_purchases",
        "customer_engagement",
        "customer_service",
        "customer_offers",
        "customer_profile",
    ],
    "repurchase_v1": ["customer_purchases", "customer_engagement", "customer_profile"],
    "value_v1": ["customer_purchases", "customer_engagement", "customer_profile"],
    "offers_v1": [
        "customer_purchases",
        "customer_engagement",
        "customer_service",
        "customer_offers",
        "customer_profile",
    ],
}


def days_since_last_order_now(inputs: dict[str, Any]) -> dict[str, Any]:
    """Days since the last order at request time: the snapshot's value plus time since it."""
    # Feast runs this from its source text alone: everything it uses is defined inside it.
    seconds_per_day = 86_400.0
    out = []
    for snapshot_days, last_order_epoch, request_time in zip(
        inputs["days_since_last_order"],
        inputs["last_order_epoch"],
        inputs["request_time"],
        strict=True,
    ):
        if last_order_epoch is None or request_time is None:
            out.append(snapshot_days)
        else:
            out.append(max(0.0, (request_time - last_order_epoch) / seconds_per_day))
    return {"days_since_last_order_now": out}


def load_schema(path: Path = SCHEMA_FILE) -> dict[str, list[dict[str, str]]]:
    """View name -> its feature columns (name, type, description), from schema.json."""
    return json.loads(path.read_text())


def build(home: Path, schema: dict[str, list[dict[str, str]]] | None = None) -> list[Any]:
    """All Feast objects of the repository, with sources under ``home`` (absolute)."""
    schema = schema or load_schema()
    snapshots = Path(home) / "features" / "snapshots"

    customer = Entity(
        name="customer",
        join_keys=["customer_id"],
        value_type=ValueType.STRING,
        description="A retailer's customer.",
    )
    views: dict[str, FeatureView] = {}
    for view, columns in schema.items():
        source = FileSource(
            name=f"{view}_source",
            path=str(snapshots / f"{view}.parquet"),
            timestamp_field="event_timestamp",
            description=f"Snapshots of {view} per customer and cutoff.",
        )
        push = PushSource(name=f"{view}_push", batch_source=source)
        views[view] = FeatureView(
            name=view,
            entities=[customer],
            ttl=SNAPSHOT_TTL,
            schema=[
                Field(name=c["name"], dtype=FEAST_TYPES[c["type"]], description=c["description"])
                for c in columns
            ],
            source=push,
            online=True,
        )

    request = RequestSource(
        name="request",
        schema=[Field(name="request_time", dtype=Float64, description="Unix seconds.")],
    )
    request_time_features = on_demand_feature_view(
        name="request_time_features",
        sources=[
            views["customer_purchases"][["days_since_last_order", "last_order_epoch"]],
            request,
        ],
        schema=[Field(name="days_since_last_order_now", dtype=Float64)],
        mode="python",
        description="Snapshot features brought forward to the moment of the request.",
    )(days_since_last_order_now)

    services = [
        FeatureService(
            name=name,
            features=[views[v] for v in families] + [request_time_features],
            description=f"Features of the {name.split('_v')[0]} model, version {name[-1]}.",
        )
        for name, families in SERVICES.items()
    ]
    return [customer, *views.values(), request, request_time_features, *services]
