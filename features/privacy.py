"""Erasure and export of one customer's data (right to be forgotten, right of access).

:func:`erase` removes every row Kizuna holds on the given customers from the home:

* the lake (customers, orders, their order lines, events, exposures): each file holding
  them is rewritten without them under a new name and the manifest swapped in one step
  (so a reader sees the lake before or after, never between);
* the quarantine (rejected rows and conflicts that name them);
* the feature snapshots and the push log behind the Feast offline store;
* the Feast online store (their rows deleted, the database vacuumed);
* the serving logs: decisions, outcomes, campaign exports, the event inbox's log;
* the batch files ``kizuna score`` wrote (their paths are remembered for this).

It then keeps a **tombstone**: a keyed hash of the id (HMAC-SHA256 with a secret of the
home), never the id, with the moment of erasure, so an ingest or an event cannot bring
the customer back. A customer row whose ``signup_at`` is after the erasure is a new
consent record and lifts the tombstone. Trained models are not retrained by an erasure:
their weights hold no row of anyone (docs/privacy.md); the next training set lacks them.

:func:`export` gathers everything held on one customer as JSON-ready data.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from kizuna.features.lake import Lake
from kizuna.settings import Settings

log = logging.getLogger(__name__)

# Lake kinds with a customer_id column; order_lines go with their orders.
BY_CUSTOMER = ("customers", "orders", "events", "exposures", "profile_changes")


class PrivacyError(ValueError):
    """An erasure or export cannot run as asked; the message says what to do."""


# -- tombstones ----------------------------------------------------------------------------
def privacy_dir(settings: Settings) -> Path:
    return settings.home_dir / "privacy"


def _secret(settings: Settings) -> bytes:
    path = privacy_dir(settings) / "tombstone.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return bytes.fromhex(path.read_text().strip())


def digest(settings: Settings, customer_id: str) -> str:
    """The keyed hash a tombstone holds instead of the id."""
    return hmac.new(_secret(settings), customer_id.encode(), hashlib.sha256).hexdigest()


class Tombstones:
    """The erased customers of a home, by keyed hash (``privacy/tombstones.jsonl``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = privacy_dir(settings) / "tombstones.jsonl"
        self._stamp: tuple | None = None
        self._erased: dict[str, datetime] = {}

    def _load(self) -> dict[str, datetime]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._erased = None, {}
            return self._erased
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            erased: dict[str, datetime] = {}
            for line in self.path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    erased[entry["digest"]] = datetime.fromisoformat(entry["erased_at"])
            self._stamp, self._erased = stamp, erased
        return self._erased

    def __len__(self) -> int:
        return len(self._load())

    def erased_at(self, customer_id: str) -> datetime | None:
        """When the customer was erased, or None."""
        erased = self._load()
        if not erased:
            return None
        return erased.get(digest(self.settings, customer_id))

    def erased_mask(self, customer_ids: pd.Series) -> pd.Series:
        """Which of ``customer_ids`` are erased (one hash per distinct id)."""
        erased = self._load()
        if not erased:
            return pd.Series(False, index=customer_ids.index)
        unique = customer_ids.dropna().astype(str).unique()
        hit = {c for c in unique if digest(self.settings, c) in erased}
        return customer_ids.astype(str).isin(hit)

    def add(self, customer_ids: Iterable[str], at: datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            for customer_id in customer_ids:
                entry = {"digest": digest(self.settings, customer_id), "erased_at": at.isoformat()}
                fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def lift(self, customer_ids: Iterable[str]) -> None:
        """Forget the tombstones of customers who gave a new consent record."""
        gone = {digest(self.settings, c) for c in customer_ids}
        erased = self._load()
        if not gone & set(erased):
            return
        kept = [
            json.dumps({"digest": d, "erased_at": at.isoformat()})
            for d, at in erased.items()
            if d not in gone
        ]
        _replace_text(self.path, "".join(line + "\n" for line in kept))


# -- batch outputs ---------------------------------------------------------------------------
def outputs_path(settings: Settings) -> Path:
    return privacy_dir(settings) / "outputs.json"


def remember_output(settings: Settings, path: Path) -> None:
    """Record a batch file Kizuna wrote (``kizuna score --out``), so an erasure reaches it."""
    known = _outputs(settings)
    resolved = str(path.resolve())
    if resolved not in known:
        _replace_text(outputs_path(settings), json.dumps([*known, resolved], indent=1))


def _outputs(settings: Settings) -> list[str]:
    path = outputs_path(settings)
    return json.loads(path.read_text()) if path.exists() else []


# -- erasure ---------------------------------------------------------------------------------
@dataclass
class ErasureReport:
    """What an erasure removed, by place (rows or lines)."""

    erased: int
    erased_at: datetime
    removed: dict[str, int] = field(default_factory=dict)

    def add(self, place: str, count: int) -> None:
        if count:
            self.removed[place] = self.removed.get(place, 0) + count


def _replace_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _without(frame: pd.DataFrame, ids: set[str], orders: set[str]) -> pd.Series:
    """Rows of ``frame`` that name none of ``ids`` (in any text cell) nor their orders."""
    keep = pd.Series(True, index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            text = values.astype("string").str.strip()
            keep &= ~text.isin(ids).fillna(False)
            if column == "order_id" and orders:
                keep &= ~text.isin(orders).fillna(False)
    return keep


def _rewrite_parquet(path: Path, ids: set[str], orders: set[str], target: Path | None = None):
    """Write ``path`` without the rows naming ``ids`` to ``target`` (default: in place);
    returns how many rows went, or 0 without writing when none did."""
    frame = pd.read_parquet(path)
    keep = _without(frame, ids, orders)
    removed = int((~keep).sum())
    if removed:
        target = target or path
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        frame[keep.to_numpy()].to_parquet(tmp, index=False)
        os.replace(tmp, target)
    return removed


def _order_ids(lake: Lake, ids: set[str]) -> set[str]:
    files = lake.files("orders")
    if not files:
        return set()
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE gone (customer_id VARCHAR)")
    con.executemany("INSERT INTO gone VALUES (?)", [[c] for c in ids])
    rows = con.execute(
        f"SELECT order_id FROM {lake.relation_sql('orders')} "
        "WHERE customer_id IN (SELECT customer_id FROM gone)"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _erase_lake(lake: Lake, ids: set[str], orders: set[str], report: ErasureReport) -> None:
    with lake.writer():
        manifest = lake.manifest()
        replaced: list[Path] = []
        for kind, files in manifest.files.items():
            kept = []
            for rel in files:
                path = lake.root / rel
                new_rel = str(
                    Path(rel).with_name(f"{Path(rel).stem}-e{manifest.version + 1}.parquet")
                )
                removed = _rewrite_parquet(path, ids, orders, lake.root / new_rel)
                report.add(f"lake/{kind}", removed)
                if removed:
                    replaced.append(path)
                kept.append(new_rel if removed else rel)
            manifest.files[kind] = kept
        quarantine = []
        for rel in manifest.quarantine:
            path = lake.quarantine_root / rel
            if path.exists():
                report.add("quarantine", _rewrite_parquet(path, ids, orders))
            quarantine.append(rel)
        manifest.quarantine = quarantine
        if not replaced and not report.removed.get("quarantine"):
            return
        manifest.version += 1
        manifest.ingests.append(
            {
                "ingest_id": f"erasure-{uuid.uuid4().hex[:8]}",
                "erasure": len(ids),
                "committed_at": datetime.now(UTC).isoformat(),
            }
        )
        _replace_text(lake.root / "_manifest.json", manifest.to_json())
        for path in replaced:
            path.unlink(missing_ok=True)


def _erase_features(settings: Settings, ids: set[str], orders: set[str], report) -> None:
    features = settings.home_dir / "features"
    if not features.exists():
        return
    for path in features.rglob("*.partial"):  # a push cut by a crash: never read, dropped
        path.unlink()
    for path in sorted(features.rglob("*.parquet")):
        report.add(
            f"features/{path.relative_to(features).parts[0]}", _rewrite_parquet(path, ids, orders)
        )


def _erase_online(settings: Settings, ids: set[str], report: ErasureReport) -> None:
    database = settings.home_dir / "feast" / "online_store.db"
    if not database.exists():
        return
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from kizuna.features.store import repo_config

    version = repo_config(settings).entity_key_serialization_version
    keys = [
        serialize_entity_key(
            EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=c)]), version
        )
        for c in ids
    ]
    con = sqlite3.connect(database)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        removed = 0
        for table in tables:
            columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            if "entity_key" not in columns:
                continue
            for key in keys:
                removed += con.execute(
                    f'DELETE FROM "{table}" WHERE entity_key = ?', (key,)
                ).rowcount
        con.commit()
        con.execute("VACUUM")  # the deleted pages' bytes go too
    finally:
        con.close()
    report.add("feast online store", removed)


def _erase_csv(path: Path, ids: set[str], report: ErasureReport, place: str) -> None:
    text = path.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if not ids & {c.strip() for c in r}]
    if len(kept) < len(rows):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(kept)
        _replace_text(path, out.getvalue())
        report.add(place, len(rows) - len(kept))


def _erase_serving(
    settings: Settings, ids: set[str], report: ErasureReport, decisions: Any = None
) -> None:
    from kizuna.serving.decisions import DecisionLog

    serving = settings.home_dir / "serving"
    # The running server's log when the API erases (its memory forgets them too).
    log_ = decisions if decisions is not None else DecisionLog(serving)
    removed_decisions, removed_outcomes = log_.forget(ids)
    report.add("decisions", removed_decisions)
    report.add("outcomes", removed_outcomes)
    campaigns = serving / "campaigns"
    if campaigns.exists():
        for path in sorted(campaigns.rglob("*")):
            if path.suffix == ".csv":
                _erase_csv(path, ids, report, "campaign exports")
            elif path.suffix in (".json", ".jsonl"):
                _erase_text_file(path, ids, report, "campaign exports")
    report.add("event inbox", forget_events(serving, ids))


def forget_events(serving: Path, ids: set[str]) -> int:
    """Redact the customers' events in the event inbox's logs (``events*.jsonl``): each
    becomes ``{"event_id": "erased-<hash>", "erased": true}``, so the log keeps its lines
    (the applied marker counts them); an event of theirs sent again is refused, as every
    event of an erased customer is. Returns how many were redacted."""
    redacted = 0

    def scrub(events: list) -> list:
        nonlocal redacted
        out = []
        for event in events:
            if isinstance(event, dict) and event.get("customer_id") in ids:
                # Event ids often embed the customer's: keep only a hash of it.
                hashed = hashlib.sha256(str(event.get("event_id")).encode()).hexdigest()[:16]
                out.append({"event_id": f"erased-{hashed}", "erased": True})
                redacted += 1
            else:
                out.append(event)
        return out

    for path in sorted(serving.glob("events*.jsonl")):
        before, lines = redacted, []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                lines.append(line)  # a line cut by a crash: never acknowledged
                continue
            if isinstance(record, list):
                record = scrub(record)
            elif isinstance(record, dict) and isinstance(record.get("events"), list):
                record = {**record, "events": scrub(record["events"])}
            lines.append(json.dumps(record, default=str))
        if redacted > before:
            _replace_text(path, "".join(line + "\n" for line in lines))
    return redacted


def _erase_text_file(path: Path, ids: set[str], report: ErasureReport, place: str) -> None:
    """A JSON file: drop the list items or lines naming the customers."""
    text = path.read_text()
    if not any(c in text for c in ids):
        return
    if path.suffix == ".jsonl":
        lines = text.splitlines()
        kept = [line for line in lines if not any(f'"{c}"' in line for c in ids)]
        _replace_text(path, "".join(line + "\n" for line in kept))
        report.add(place, len(lines) - len(kept))
        return
    data = json.loads(text)

    def scrub(value: Any) -> Any:
        if isinstance(value, list):
            kept = [scrub(v) for v in value if not _names(v, ids)]
            report.add(place, len(value) - len(kept))
            return kept
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    _replace_text(path, json.dumps(scrub(data), indent=1))


def _names(value: Any, ids: set[str]) -> bool:
    if isinstance(value, str):
        return value in ids
    if isinstance(value, dict):
        return value.get("customer_id") in ids
    return False


def _erase_outputs(settings: Settings, ids: set[str], report: ErasureReport) -> None:
    for name in _outputs(settings):
        path = Path(name)
        if not path.exists():
            continue
        if path.suffix == ".parquet":
            report.add("batch outputs", _rewrite_parquet(path, ids, set()))
        elif path.suffix == ".csv":
            _erase_csv(path, ids, report, "batch outputs")


def erase(settings: Settings, customer_ids: Iterable[str], decisions: Any = None) -> ErasureReport:
    """Remove every row held on ``customer_ids`` and keep their tombstones.

    Args:
        settings: whose home.
        customer_ids: the customers to erase.
        decisions: the running server's DecisionLog (the API passes it), else the file's.

    Raises:
        PrivacyError: no id given.
        LakeBusyError: an ingest is writing to the lake (retry after it).
    """
    ids = {c.strip() for c in customer_ids if c and c.strip()}
    if not ids:
        raise PrivacyError("give at least one customer id, e.g. kizuna customers delete C000123")
    at = datetime.now(UTC)
    report = ErasureReport(erased=len(ids), erased_at=at)
    lake = Lake(settings)
    orders = _order_ids(lake, ids)
    # The tombstone first: from here on no ingest or event can add them back.
    Tombstones(settings).add(sorted(ids), at)
    _erase_lake(lake, ids, orders, report)
    _erase_features(settings, ids, orders, report)
    _erase_online(settings, ids, report)
    _erase_serving(settings, ids, report, decisions)
    _erase_outputs(settings, ids, report)
    staging = settings.staging_dir
    if staging.exists():
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    log.info("erased %d customer(s): %s", len(ids), report.removed)
    return report


# -- export ----------------------------------------------------------------------------------
def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def export(settings: Settings, customer_id: str) -> dict[str, Any]:
    """Everything Kizuna holds on one customer, as JSON-ready data.

    Raises:
        PrivacyError: Kizuna holds nothing on them (never seen, or erased).
    """
    lake = Lake(settings)
    ids, orders = {customer_id}, _order_ids(lake, {customer_id})
    held: dict[str, Any] = {
        "customer_id": customer_id,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    found = False
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    lake_part: dict[str, Any] = {}
    for kind in (*BY_CUSTOMER, "order_lines"):
        if not lake.files(kind):
            continue
        column, values = (
            ("order_id", sorted(orders))
            if kind == "order_lines"
            else ("customer_id", [customer_id])
        )
        if not values:
            continue
        marks = ", ".join("?" for _ in values)
        frame = con.execute(
            f"SELECT * FROM {lake.relation_sql(kind)} WHERE {column} IN ({marks})", values
        ).df()
        frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_") or c == "month"])
        lake_part[kind] = _records(frame)
        found |= not frame.empty
    held["lake"] = lake_part
    quarantined = []
    for path in lake.quarantine_files():
        frame = pd.read_parquet(path)
        rows = frame[~_without(frame, ids, orders).to_numpy()]
        if not rows.empty:
            quarantined.append({"file": path.name, "rows": _records(rows)})
    held["quarantine"] = quarantined
    found |= bool(quarantined)
    features = settings.home_dir / "features"
    snapshots = {}
    for path in sorted(features.rglob("*.parquet")) if features.exists() else []:
        frame = pd.read_parquet(path, filters=[("customer_id", "==", customer_id)])
        if not frame.empty:
            snapshots[str(path.relative_to(features))] = _records(frame)
    held["features"] = snapshots
    serving = settings.home_dir / "serving"
    decisions = _lines(serving / "decisions.jsonl", lambda r: r.get("customer_id") == customer_id)
    ids_of = {d["decision_id"] for d in decisions}
    held["decisions"] = decisions
    held["outcomes"] = _lines(serving / "outcomes.jsonl", lambda r: r.get("decision_id") in ids_of)
    found |= bool(decisions)
    erased = Tombstones(settings).erased_at(customer_id)
    if not found:
        if erased is not None:
            raise PrivacyError(
                f"customer {customer_id!r} was erased on {erased:%Y-%m-%d}; Kizuna holds "
                "nothing on them but a keyed hash of the id (docs/privacy.md)"
            )
        raise PrivacyError(f"Kizuna holds nothing on a customer {customer_id!r}; check the id")
    return held


def _lines(path: Path, keep) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if keep(record):
                out.append(record)
    return out
