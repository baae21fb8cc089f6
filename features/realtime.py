"""The real-time path: new purchases and engagement in, fresh online features out.

:func:`push_updates` is what the API calls for ``POST /v1/events``. It

1. lands the new rows through the same validated, idempotent, atomic ingest as files
   (so an acknowledged event is durable, and a replayed one changes nothing);
2. recomputes the touched customers' features as of now with the same SQL as the batch
   snapshots (:mod:`kizuna.features.compute`), so online and offline values cannot drift;
3. pushes them to Feast's online store through each view's PushSource, and appends them
   to an offline log (``$KIZUNA_HOME/features/pushed/<view>/``) for audit and training.
"""

from __future__ import annotations

import logging
import shutil
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from kizuna.features.catalog import VIEWS
from kizuna.features.compute import Tables, compute_snapshots
from kizuna.features.ingest import IngestReport, connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.store import open_store
from kizuna.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class PushReport:
    """What a push did: the ingest summary, whom it refreshed, and as of when."""

    ingest: IngestReport
    customers: list[str]
    as_of: datetime
    log_files: list[Path]


def push_updates(
    settings: Settings,
    *,
    orders: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    order_lines: pd.DataFrame | None = None,
    profile_changes: pd.DataFrame | None = None,
    as_of: datetime | None = None,
) -> PushReport:
    """Land new orders and events, then push the touched customers' features online.

    Args:
        settings: where the lake and the feature store are.
        orders, events, order_lines, profile_changes: new rows in the contracts of
            docs/data.md.
        as_of: the moment the features describe; default now. Rows later than it are
            ingested but not counted (no leakage into the present).

    Returns:
        The ingest report (rejected rows are quarantined as with any ingest), the
        customers refreshed and the files appended to the offline log.
    """
    as_of = as_of or datetime.now(UTC)
    frames = {
        "orders": orders,
        "order_lines": order_lines,
        "events": events,
        "profile_changes": profile_changes,
    }
    frames = {k: v for k, v in frames.items() if v is not None and len(v)}
    if not frames:
        raise ValueError("nothing to push: give orders, order_lines, events or profile_changes")
    incoming = settings.home_dir / ".incoming" / uuid.uuid4().hex
    incoming.mkdir(parents=True)
    try:
        paths = []
        for kind, frame in frames.items():
            path = incoming / f"{kind}.parquet"
            frame.to_parquet(path, index=False)
            paths.append(path)
        report = ingest(paths, settings)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)

    lake = Lake(settings)
    con = connect(settings)
    customers = {
        str(c)
        for kind in ("orders", "events", "profile_changes")
        if kind in frames
        for c in frames[kind]["customer_id"].dropna()
    }
    if "order_lines" in frames:  # lines change their order's customer, wherever the order is
        ids = frames["order_lines"]["order_id"].astype(str).tolist()
        customers |= {
            row[0]
            for row in con.execute(
                f"SELECT DISTINCT customer_id FROM {lake.relation_sql('orders')} "
                "WHERE order_id IN (SELECT unnest($ids))",
                {"ids": ids},
            ).fetchall()
        }
    if not customers:
        return PushReport(report, [], as_of, [])

    touched = sorted(customers)
    snapshots = compute_snapshots(con, Tables.from_lake(lake), [as_of], touched)
    store = open_store(settings)
    written = []
    stamp = as_of.strftime("%Y%m%dT%H%M%S")
    for view in VIEWS:
        frame = snapshots[view]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store.push(f"{view}_push", frame, to=_online())
        target = settings.home_dir / "features" / "pushed" / view
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        frame.to_parquet(path, index=False)
        written.append(path)
    log.info("pushed fresh features of %d customers as of %s", len(touched), as_of)
    return PushReport(report, touched, as_of, written)


def _online():
    from feast.data_source import PushMode

    return PushMode.ONLINE
