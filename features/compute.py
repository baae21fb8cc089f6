"""Batch features: one snapshot per customer and cutoff, computed in DuckDB.

A snapshot at cutoff ``t`` describes each customer as they were at ``t``, from rows dated
at or before ``t`` only (DESIGN.md, "No leakage"): orders by ``ordered_at``, order lines
by their order's ``ordered_at``, events by ``occurred_at``, exposures by ``sent_at``,
customers by ``signup_at``. Its population is every customer who signed up by ``t`` and
every customer with an order, event or exposure by ``t`` (a customer without a signup date
counts from their first activity, never before it).

The features and what each means are in :mod:`kizuna.features.catalog`; the SQL, one
query per feature view, in :mod:`kizuna.features.compute_sql`. Training stacks snapshots
of many cutoffs (:func:`build_feature_files` writes them as Parquet for Feast's offline
store); serving computes the latest one. Both run the same queries.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from kizuna.features.catalog import VIEWS, by_view
from kizuna.features.compute_sql import BUILDERS, Cut, population_sql, timestamp_literal
from kizuna.features.ingest import connect
from kizuna.features.lake import Lake, empty_relation_sql
from kizuna.settings import Settings

log = logging.getLogger(__name__)

_PANDAS_TYPES = {"int": "int64", "float": "float64", "string": "object", "bool": "bool"}


class FeatureBuildError(ValueError):
    """Features cannot be computed from what was given (no data, bad cutoffs)."""


@dataclass(frozen=True)
class Tables:
    """DuckDB table expressions for each contract kind (a file scan, a view or a table)."""

    customers: str
    orders: str
    order_lines: str
    events: str
    offers: str
    exposures: str
    # Consent, tier and country changes after the customer row (empty: none).
    profile_changes: str = ""

    def __post_init__(self) -> None:
        if not self.profile_changes:
            object.__setattr__(self, "profile_changes", empty_relation_sql("profile_changes"))

    @classmethod
    def from_lake(cls, lake: Lake) -> Tables:
        """The lake's current files of each kind."""
        return cls(**{f.name: lake.relation_sql(f.name) for f in fields(cls)})

    @classmethod
    def from_folder(cls, folder: Path) -> Tables:
        """``<folder>/<kind>.parquet`` per kind (as the simulator writes); empty when missing."""
        folder = Path(folder).expanduser().resolve()
        out = {}
        for f in fields(cls):
            path = folder / f"{f.name}.parquet"
            out[f.name] = f"read_parquet('{path}')" if path.exists() else empty_relation_sql(f.name)
        return cls(**out)


def as_utc(cutoff: datetime) -> datetime:
    """``cutoff`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if cutoff.tzinfo is None:
        return cutoff.replace(tzinfo=UTC)
    return cutoff.astimezone(UTC)


def snapshot_sql(
    tables: Tables, cutoff: datetime, customer_ids: Sequence[str] | None = None
) -> dict[str, str]:
    """One SELECT per feature view for the snapshot at ``cutoff``.

    Args:
        tables: where the contract tables are.
        cutoff: the moment ``t``; rows dated after it are never read. Naive means UTC.
        customer_ids: restrict the snapshot to these customers (RFM quintiles still rank
            them among all customers who bought by ``t``); None for everyone.

    Returns:
        View name -> SQL producing ``customer_id``, ``event_timestamp`` (= ``t``,
        TIMESTAMPTZ) and the view's catalog features in catalog order.
    """
    cut = Cut(as_utc(cutoff), customer_ids)
    return {view: BUILDERS[view](tables, cut) for view in VIEWS}


def _typed(view: str, frame: pd.DataFrame) -> pd.DataFrame:
    types = {"customer_id": "object"} | {f.name: _PANDAS_TYPES[f.type] for f in by_view(view)}
    frame = frame.astype(types)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame.sort_values(["event_timestamp", "customer_id"], ignore_index=True)


def compute_snapshots(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    cutoffs: Sequence[datetime],
    customer_ids: Sequence[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Snapshots of all ``cutoffs``, stacked, one DataFrame per view (for tests and serving).

    Rows are sorted by ``event_timestamp``, then ``customer_id``. Integer features come back
    as int64 (never null), floats as float64 (NaN where the catalog says null), strings as
    object, flags as bool (never null). Use
    :func:`build_feature_files` for whole populations: it never loads them into pandas.
    """
    parts: dict[str, list[pd.DataFrame]] = {view: [] for view in VIEWS}
    for cutoff in cutoffs:
        for view, sql in snapshot_sql(tables, cutoff, customer_ids).items():
            parts[view].append(con.execute(sql).df())
    if not cutoffs:  # the empty frame still has the right columns
        cut = datetime(1970, 1, 1, tzinfo=UTC)
        for view, sql in snapshot_sql(tables, cut, []).items():
            parts[view].append(con.execute(sql).df())
    return {view: _typed(view, pd.concat(p, ignore_index=True)) for view, p in parts.items()}


#: Beside the snapshots: how many of the lake manifest's ingests they were built from.
SNAPSHOT_LAKE = "_lake.json"


def snapshots_dir(settings: Settings) -> Path:
    """Where the snapshot files live: ``$KIZUNA_HOME/features/snapshots``."""
    return settings.home_dir / "features" / "snapshots"


def build_feature_files(
    settings: Settings,
    cutoffs: Sequence[datetime],
    tables: Tables | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Compute the snapshots of ``cutoffs`` and merge them into one Parquet file per view.

    Each file holds every cutoff built so far: rows of the cutoffs built now replace the
    rows of those cutoffs already in the file, other cutoffs are kept. A file written by an
    older catalog (other columns) cannot be merged; its old cutoffs are dropped with a
    warning. Every file is written aside and moved in with ``os.replace``, so a reader sees
    the old file or the new one, never half of one. Rows go from DuckDB to Parquet
    directly, within ``settings.duckdb_memory_limit``, spilling to a temporary folder under
    ``$KIZUNA_HOME/features``.

    Args:
        settings: where ``KIZUNA_HOME`` is, and DuckDB's memory limit.
        cutoffs: the moments to build; naive ones are UTC.
        tables: the input tables; the lake under ``settings.home`` when None.
        progress: called as ``progress(steps done, steps in total)``, one step per
            cutoff and view.

    Returns:
        View name -> path of its snapshot file.

    Raises:
        FeatureBuildError: if no cutoff is given.
    """
    moments = sorted({as_utc(c) for c in cutoffs})
    if not moments:
        raise FeatureBuildError("no cutoffs to build; pass at least one")
    # The lake's ingests the snapshots hold (at least): consent changes ingested later are
    # caught up by kizuna.features.realtime.ConsentFollower.
    ingests = len(Lake(settings).manifest().ingests) if tables is None else None
    if tables is None:
        tables = Tables.from_lake(Lake(settings))
    out_dir = snapshots_dir(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / f".build-{uuid.uuid4().hex[:12]}"
    con = connect(settings, temp_dir=work / "duckdb-tmp")
    try:
        total, done = len(moments) * len(VIEWS), 0
        for i, moment in enumerate(moments):
            cut = Cut(moment, population_table="snapshot_population")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE snapshot_population AS "
                f"WITH {population_sql(tables, Cut(moment))} SELECT customer_id FROM population"
            )
            for view, builder in BUILDERS.items():
                part = work / view / f"cutoff-{i:05d}.parquet"
                part.parent.mkdir(parents=True, exist_ok=True)
                con.execute(f"COPY ({builder(tables, cut)}) TO '{part}' (FORMAT parquet)")
                done += 1
                if progress is not None:
                    progress(done, total)
            log.info("built the snapshot at %s", moment.isoformat())
        published = {view: _publish(con, view, work, out_dir, moments) for view in VIEWS}
        if ingests is not None:
            (out_dir / SNAPSHOT_LAKE).write_text(json.dumps({"ingests": ingests}) + "\n")
        return published
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _publish(
    con: duckdb.DuckDBPyConnection,
    view: str,
    work: Path,
    out_dir: Path,
    moments: list[datetime],
) -> Path:
    """Merge the new cutoffs of ``view`` with the other cutoffs of its file, atomically."""
    target = out_dir / f"{view}.parquet"
    parts = sorted((work / view).glob("*.parquet"))
    if not target.exists() and len(parts) == 1:
        os.replace(parts[0], target)  # nothing to merge with
        return target
    selects = [f"SELECT * FROM read_parquet('{work / view}/*.parquet')"]
    if target.exists():
        expected = ["customer_id", "event_timestamp", *(f.name for f in by_view(view))]
        old = f"read_parquet('{target}')"
        found = [d[0] for d in con.execute(f"SELECT * FROM {old} LIMIT 0").description]
        if found == expected:
            listed = ", ".join(timestamp_literal(m) for m in moments)
            selects.append(f"SELECT * FROM {old} WHERE event_timestamp NOT IN ({listed})")
        else:
            log.warning(
                "%s was written by another version of the feature catalog; its other "
                "cutoffs are dropped, build them again",
                target,
            )
    tmp = out_dir / f".{view}.parquet.{uuid.uuid4().hex[:8]}.tmp"
    try:
        con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO '{tmp}' (FORMAT parquet)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def cutoff_range(start: date, end: date, every: timedelta) -> list[datetime]:
    """Cutoffs at 00:00 UTC from ``start`` to ``end`` (inclusive), ``every`` whole days.

    Raises:
        FeatureBuildError: if ``every`` is not a positive number of days or end < start.
    """
    if every < timedelta(days=1) or every % timedelta(days=1):
        raise FeatureBuildError(f"cutoffs must be whole days apart, got every={every}")
    if end < start:
        raise FeatureBuildError(f"the last cutoff {end} is before the first {start}")
    out, day = [], start
    while day <= end:
        out.append(datetime.combine(day, time(0), tzinfo=UTC))
        day += every
    return out


def default_cutoff(tables: Tables, con: duckdb.DuckDBPyConnection | None = None) -> datetime:
    """00:00 UTC of the day after the latest order or event: a snapshot that sees all data.

    Raises:
        FeatureBuildError: if there are no orders and no events.
    """
    con = con or duckdb.connect()
    (day,) = con.execute(
        "SELECT CAST(timezone('UTC', max(latest)) AS DATE) + 1 FROM ("
        f"SELECT max(ordered_at) AS latest FROM {tables.orders} AS src "
        f"UNION ALL SELECT max(occurred_at) FROM {tables.events} AS src)"
    ).fetchone()
    if day is None:
        raise FeatureBuildError(
            "no orders or events to take a cutoff from; ingest them first "
            "(`kizuna ingest FILES`, or `kizuna retrain FILES`)"
        )
    return datetime.combine(day, time(0), tzinfo=UTC)


__all__ = [
    "FeatureBuildError",
    "Tables",
    "build_feature_files",
    "compute_snapshots",
    "cutoff_range",
    "default_cutoff",
    "snapshot_sql",
    "snapshots_dir",
]
