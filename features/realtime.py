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

import json
import logging
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from kizuna.features.catalog import VIEWS
from kizuna.features.compute import SNAPSHOT_LAKE, Tables, compute_snapshots, snapshots_dir
from kizuna.features.ingest import IngestReport, connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.privacy import Tombstones
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
                f"SELECT DISTINCT customer_id FROM {Lake(settings).relation_sql('orders')} "
                "WHERE order_id IN (SELECT unnest($ids))",
                {"ids": ids},
            ).fetchall()
        }
    if not customers:
        return PushReport(report, [], as_of, [])
    touched = sorted(customers)
    return PushReport(report, touched, as_of, refresh_online(settings, touched, as_of, con))


def refresh_online(
    settings: Settings,
    customers: list[str],
    as_of: datetime,
    con: duckdb.DuckDBPyConnection | None = None,
) -> list[Path]:
    """Recompute ``customers``' features as of ``as_of`` from the lake, push them to the
    online store and append them to the offline log; returns the log files written."""
    con = con or connect(settings)
    touched = sorted(customers)
    snapshots = compute_snapshots(con, Tables.from_lake(Lake(settings)), [as_of], touched)
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
        # Written aside and moved in: a kill -9 mid-write must not leave a cut file that
        # every later read of the log (a server's start) trips over.
        partial = path.with_name(f".{path.name}.partial")
        frame.to_parquet(partial, index=False)
        os.replace(partial, path)
        written.append(path)
    log.info("pushed fresh features of %d customers as of %s", len(touched), as_of)
    return written


#: Under features/pushed: how many of the lake's ingests have had their consent and
#: profile changes pushed online (by the API or by `kizuna score`).
CONSENT_CURSOR = "_consent.json"


@dataclass
class ConsentFollower:
    """Catches the online features up with consent and profile changes ingested from
    *files* after the snapshots were built: every customer of a new ``profile_changes``
    file (a re-ingested customer row or a file of changes) and of a new unsubscribe event.
    The API's own pushes (:func:`push_updates`) are skipped: they refreshed their customers.

    ``seen`` is how many of the lake manifest's ingests have been looked at."""

    settings: Settings
    seen: int = 0

    @property
    def _cursor(self) -> Path:
        return self.settings.home_dir / "features" / "pushed" / CONSENT_CURSOR

    @classmethod
    def load(cls, settings: Settings) -> ConsentFollower:
        """From the later of what the snapshots hold and what was caught up already."""
        follower = cls(settings)
        marks = [snapshots_dir(settings) / SNAPSHOT_LAKE, follower._cursor]
        follower.seen = max(
            (json.loads(p.read_text())["ingests"] for p in marks if p.exists()), default=0
        )
        return follower

    def catch_up(self, now: datetime | None = None) -> list[str]:
        """Recompute and push online the customers changed since ``seen`` (erased ones
        aside), record how far that went, and return them. Nothing before a first
        features build: the build reads the whole lake."""
        if not (snapshots_dir(self.settings) / SNAPSHOT_LAKE).exists():
            return []
        customers, upto = self.changed()
        ids = pd.Series(sorted(customers), dtype=str)
        ids = ids[~Tombstones(self.settings).erased_mask(ids)].tolist()
        if ids:
            refresh_online(self.settings, ids, now or datetime.now(UTC))
            log.info("consent or profile changes of %d customers caught up", len(ids))
        self.seen = upto
        if ids or not self._cursor.exists():
            self._cursor.parent.mkdir(parents=True, exist_ok=True)
            self._cursor.write_text(json.dumps({"ingests": upto}) + "\n")
        return ids

    def changed(self) -> tuple[set[str], int]:
        """The customers changed by the ingests after ``seen``, and the new value of
        ``seen`` to set once they are refreshed (so a failure looks again)."""
        manifest = Lake(self.settings).manifest()
        records, upto = manifest.ingests[self.seen :], len(manifest.ingests)
        incoming = str(self.settings.home_dir / ".incoming")
        ingests = {
            r["ingest_id"]
            for r in records
            # Not the API's own events, nor an erasure (no sources).
            if not all(str(s).startswith(incoming) for s in r.get("sources", []))
        }
        root = Lake(self.settings).root
        # A lake file is named after its ingest (part-<ingest_id>-<n>, kept by an erasure's
        # rewrite), so the manifest's files say which ingest wrote them.
        paths = {
            kind: [
                str(root / rel)
                for rel in manifest.files.get(kind, [])
                if _ingest_of(rel) in ingests
            ]
            for kind in ("profile_changes", "events")
        }
        if not any(paths.values()):
            return set(), upto
        con = duckdb.connect()
        customers: set[str] = set()
        for kind, files in paths.items():
            if files:
                where = "type = 'unsubscribe'" if kind == "events" else "true"
                customers |= {
                    row[0]
                    for row in con.execute(
                        f"SELECT DISTINCT customer_id FROM read_parquet($files, "
                        f"union_by_name = true) WHERE {where}",
                        {"files": files},
                    ).fetchall()
                }
        return customers, upto


def _ingest_of(rel: str) -> str:
    """The ingest id in a lake file's name: ``part-<stamp>-<hex>-<n>[-e<version>].parquet``."""
    return "-".join(Path(rel).name.removeprefix("part-").split("-")[:2])


def _online():
    from feast.data_source import PushMode

    return PushMode.ONLINE
