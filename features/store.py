"""Kizuna's side of Feast: open the store from Settings, apply, materialize, read.

The repository lives in ``features/feature_repo`` (Feast and the standard library only).
Paths come from :class:`~kizuna.settings.Settings`: ``${KIZUNA_HOME}`` in
``feature_store.yaml`` is replaced by the absolute home before Feast sees it, so the
working directory never matters.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import yaml

from kizuna.features.catalog import FEATURES, VIEWS
from kizuna.features.compute import snapshots_dir
from kizuna.settings import Settings

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().with_name("feature_repo")
SCHEMA_FILE = REPO_DIR / "schema.json"
REQUEST_TIME = "request_time"


class FeatureStoreError(RuntimeError):
    """The feature store cannot do what was asked; the message says what to run first."""


def catalog_schema() -> dict[str, list[dict[str, str]]]:
    """schema.json's content: each view's features from the catalog, in order."""
    return {
        view: [
            {"name": f.name, "type": f.type, "description": f.meaning}
            for f in FEATURES
            if f.view == view
        ]
        for view in VIEWS
    }


def write_schema() -> bool:
    """Write schema.json from the catalog; True when it changed."""
    text = json.dumps(catalog_schema(), indent=1) + "\n"
    if SCHEMA_FILE.exists() and SCHEMA_FILE.read_text() == text:
        return False
    SCHEMA_FILE.write_text(text)
    return True


def _definitions() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kizuna_feature_repo_definitions", REPO_DIR / "definitions.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repo_config(settings: Settings):
    """Feast's RepoConfig for this home, from feature_store.yaml."""
    from feast.repo_config import RepoConfig

    home = settings.home_dir
    text = (REPO_DIR / "feature_store.yaml").read_text().replace("${KIZUNA_HOME}", str(home))
    config = RepoConfig(**yaml.safe_load(text))
    config.repo_path = REPO_DIR
    return config


def open_store(settings: Settings):
    """A FeatureStore over ``settings.home`` (creating its folder)."""
    from feast import FeatureStore

    (settings.home_dir / "feast").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureStore(repo_path=str(REPO_DIR), config=repo_config(settings))


def feast_objects(settings: Settings) -> list[Any]:
    """The repository's objects, built for this home."""
    return _definitions().build(settings.home_dir, catalog_schema())


@dataclass
class ApplySummary:
    """What ``kizuna features apply`` registered."""

    views: dict[str, int]
    services: dict[str, int]


def apply(settings: Settings) -> ApplySummary:
    """Register the entity, views and services; the snapshot files must exist."""
    missing = [view for view in VIEWS if not (snapshots_dir(settings) / f"{view}.parquet").exists()]
    if missing:
        raise FeatureStoreError(
            f"no snapshots for {', '.join(missing)} under {snapshots_dir(settings)};"
            " run `kizuna features build` first"
        )
    write_schema()
    store = open_store(settings)
    objects = feast_objects(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Feast's "on demand feature views are experimental"
        store.apply(objects)
    return summarize(store)


def summarize(store) -> ApplySummary:
    views = {v.name: len(v.features) for v in store.list_feature_views()}
    services = {
        s.name: sum(len(p.features) for p in s.feature_view_projections)
        for s in store.list_feature_services()
    }
    return ApplySummary(views=views, services=dict(sorted(services.items())))


def snapshot_range(settings: Settings) -> tuple[datetime, datetime]:
    """The earliest and latest cutoff in the snapshot files."""
    import duckdb

    files = [str(snapshots_dir(settings) / f"{view}.parquet") for view in VIEWS]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    low, high = con.execute(
        f"SELECT min(event_timestamp), max(event_timestamp) FROM read_parquet({files})"
    ).fetchone()
    if low is None:
        raise FeatureStoreError("the snapshot files are empty; run `kizuna features build`")
    return low.astimezone(UTC), high.astimezone(UTC)


def materialize(settings: Settings, incremental: bool = False) -> tuple[datetime, datetime]:
    """Load the snapshots into the online store; returns the time range loaded.

    Full: every snapshot from the first to the last cutoff (the online store ends with the
    latest per customer). Incremental: from where the last run stopped to the last cutoff.
    """
    store = open_store(settings)
    if not store.list_feature_views():
        raise FeatureStoreError("nothing is registered; run `kizuna features apply` first")
    low, high = snapshot_range(settings)
    end = high + timedelta(seconds=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if incremental:
            store.materialize_incremental(end_date=end)
        else:
            store.materialize(start_date=low - timedelta(seconds=1), end_date=end)
    return low, high


def service_features(store, service: str) -> list[str]:
    """The ``view:feature`` references a FeatureService serves."""
    fs = store.get_feature_service(service)
    return [f"{p.name_to_use()}:{f.name}" for p in fs.feature_view_projections for f in p.features]


def training_frame(settings: Settings, entities: pd.DataFrame, service: str) -> pd.DataFrame:
    """Point-in-time features of ``service`` for (customer_id, event_timestamp) rows.

    Each row gets the values of the latest snapshot at or before its timestamp (within the
    views' TTL), through Feast's ``get_historical_features``.
    """
    store = open_store(settings)
    frame = entities[["customer_id", "event_timestamp"]].copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame[REQUEST_TIME] = frame["event_timestamp"].map(pd.Timestamp.timestamp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = store.get_historical_features(
            entity_df=frame, features=store.get_feature_service(service)
        )
        out = job.to_df()
    return out.drop(columns=[REQUEST_TIME]).sort_values(["event_timestamp", "customer_id"])


def online_features(
    settings: Settings, customer_ids: list[str], service: str, at: datetime | None = None
) -> pd.DataFrame:
    """The online values of ``service`` for some customers (at ``at``, default now)."""
    store = open_store(settings)
    moment = (at or datetime.now(UTC)).timestamp()
    rows = [{"customer_id": c, REQUEST_TIME: moment} for c in customer_ids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return store.get_online_features(
            features=store.get_feature_service(service), entity_rows=rows
        ).to_df()
