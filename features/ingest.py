"""Ingest: validate every row against its contract, land the good ones, quarantine the rest.

The path of a file through ingest:

1. read in chunks (:mod:`kizuna.features.sources`), rename columns (``--map``) or map them
   with a preset (:mod:`kizuna.features.presets`);
2. validate each chunk (:mod:`kizuna.features.validate`); rejected rows go whole, with
   their reasons, to a staged quarantine file; accepted rows to staged Parquet;
3. in DuckDB, over everything staged: drop exact duplicates, set aside keys that conflict
   (within the input or with the lake) for review with both versions, skip rows the lake
   already has, and write the new rows by month;
4. commit: move the files in and swap the lake's manifest at once
   (:class:`kizuna.features.lake.LakeWriter`).

A crash or Ctrl-C before step 4 ends leaves the lake exactly as it was.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kizuna.features.compute_sql import latest_changes_sql
from kizuna.features.contracts import (
    CONTRACTS,
    KIND_ALIASES,
    PROFILE_CHANGES,
    PROFILE_FIELDS,
    Contract,
    arrow_schema,
    contract_for,
)
from kizuna.features.lake import Lake, duck_type
from kizuna.features.presets import Preset, get_preset
from kizuna.features.privacy import Tombstones
from kizuna.features.sources import ReadOptions, SourceError, iter_chunks, read_columns
from kizuna.features.validate import validate
from kizuna.settings import Settings

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
CUSTOMER_KINDS = ("orders", "events", "exposures", "profile_changes")


class IngestError(ValueError):
    """Input that cannot be ingested at all; nothing was written."""


@dataclass
class KindReport:
    """What happened to the rows of one kind."""

    kind: str
    read: int = 0
    accepted: int = 0
    already_in_lake: int = 0
    duplicates_in_input: int = 0
    rejected: Counter = field(default_factory=Counter)
    review: Counter = field(default_factory=Counter)
    unknown_customers: int = 0
    already_quarantined: int = 0
    # Rows of erased customers, dropped (not quarantined, which would keep them).
    erased: int = 0
    # Customer rows already in the lake whose consent, tier or country changed: kept as
    # profile_changes rows (history), not sent to review as conflicts.
    profile_updates: int = 0

    rejected_rows: int = 0

    @property
    def review_total(self) -> int:
        return sum(self.review.values())


@dataclass
class IngestReport:
    """The summary ``kizuna ingest`` prints."""

    ingest_id: str
    sources: list[str]
    rows_read: int
    seconds: float
    kinds: dict[str, KindReport]
    lake_version: int

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else float("inf")


def parse_mapping(text: str | None) -> dict[str, str]:
    """Parse ``"theirs=ours,..."`` into a rename dict, or explain what is wrong."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        if "=" not in part:
            raise IngestError(
                f"--map: {part!r} is not of the form theirs=ours; "
                'write e.g. --map "Invoice=order_id,Customer ID=customer_id"'
            )
        theirs, ours = (p.strip() for p in part.split("=", 1))
        if not theirs or not ours:
            raise IngestError(f"--map: {part!r} has an empty name on one side")
        mapping[theirs] = ours
    return mapping


def _kind_from_name(path: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    named = [a for a in KIND_ALIASES if re.match(rf"{a}(?![a-z])", stem)]
    return KIND_ALIASES[max(named, key=len)] if named else None


def guess_kind(path: Path, columns: Sequence[str]) -> str:
    """The kind of a file from its name (orders.csv) or, failing that, its columns."""
    by_name = _kind_from_name(path)
    if by_name is not None:
        return by_name
    fits = [c for c in CONTRACTS.values() if set(c.required) <= set(columns)]
    most = max((len(c.required) for c in fits), default=0)
    best = [c.kind for c in fits if len(c.required) == most]
    if len(best) == 1:
        return best[0]
    raise IngestError(
        f"{path}: cannot tell which kind of table this is (columns: {', '.join(columns)}); "
        f"pass --kind, one of: {', '.join(CONTRACTS)}"
    )


@dataclass
class _Job:
    """One input file and how to turn it into contract rows."""

    path: Path
    kind: str | None
    preset: Preset | None
    mapping: dict[str, str]
    options: ReadOptions


def _check_columns(job: _Job) -> None:
    columns = read_columns(job.path, job.options)
    if job.preset is not None:
        problem = job.preset.check_columns(columns)
        if problem:
            raise IngestError(
                f"{job.path}: {problem} (preset {job.preset.name}); found: {', '.join(columns)}"
            )
        return
    renamed = [job.mapping.get(c, c) for c in columns]
    if job.kind is None:
        job.kind = guess_kind(job.path, renamed)
    contract = contract_for(job.kind)
    missing = [c for c in contract.required if c not in renamed]
    if missing:
        raise IngestError(
            f"{job.path}: missing required column(s) {', '.join(missing)} for kind "
            f"{job.kind}; found columns: {', '.join(columns)}. Rename yours with "
            '--map "theirs=ours", or choose another --kind or --preset'
        )


class _Stager:
    """Writes accepted chunks and quarantined rows to the staging folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = 0
        self.rejected: dict[str, list[Path]] = {}

    def accepted(self, kind: str, frame: pd.DataFrame, contract: Contract) -> None:
        if frame.empty:
            return
        attrs = sorted(c for c in frame.columns if str(c).startswith("attr_"))
        table = pa.Table.from_pandas(
            frame[[*contract.names, *attrs]].astype({a: "string" for a in attrs}),
            schema=arrow_schema(contract, extra=attrs),
            preserve_index=False,
        )
        self.n += 1
        path = self.root / "in" / kind / f"chunk-{self.n:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    def rejected_rows(self, kind: str, raw: pd.DataFrame) -> None:
        if raw.empty:
            return
        self.n += 1
        path = self.root / "rejected" / kind / f"chunk-{self.n:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = raw.astype("string")
        # Rows a preset derived (roll-ups) have no line of their own in the source.
        source_row = raw.get("_source_row", pd.NA)
        text["_source_row"] = pd.Series(source_row, index=raw.index, dtype="Int64")
        text.to_parquet(path, index=False)
        self.rejected.setdefault(kind, []).append(path)

    def staged_kinds(self) -> list[str]:
        folder = self.root / "in"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _quarantine_raw(
    raw: pd.DataFrame, rows: pd.Index, reasons: pd.Series, kind: str, source: Path
) -> pd.DataFrame:
    out = raw.loc[rows].copy()
    # Identifies the row itself, so that ingesting a bad file twice quarantines it once.
    out["_raw_hash"] = pd.util.hash_pandas_object(out.astype("string"), index=False).astype(str)
    out["_reasons"] = reasons.loc[rows].to_numpy()
    out["_source_row"] = rows.to_numpy() if hasattr(rows, "to_numpy") else rows
    out["_kind"] = kind
    out["_source_file"] = str(source)
    return out


def connect(settings: Settings, temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC with Kizuna's memory limit (spilling to ``temp_dir``)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{settings.duckdb_memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = '{temp_dir}'")
    return con


def _hash_sql(contract: Contract) -> str:
    parts = ", ".join(f"coalesce(CAST({c.name} AS VARCHAR), '\\N')" for c in contract.columns)
    return f"md5(concat_ws(chr(31), {parts}))"


class Ingestor:
    """Runs one ingest of one or more files into the lake."""

    def __init__(
        self,
        settings: Settings,
        *,
        now: datetime | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.settings = settings
        self.lake = Lake(settings)
        self.now = now or datetime.now(UTC)
        self.progress = progress
        self.ingest_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        self.tombstones = Tombstones(settings)
        self.lifted: set[str] = set()  # erased customers who gave a new customer record

    # -- step 1 and 2: read, map, validate, stage ----------------------------------------
    def _stage_job(self, job: _Job, stager: _Stager, reports: dict[str, KindReport]) -> int:
        state: dict = {}
        rows = 0
        label = job.path.name
        for chunk in iter_chunks(job.path, job.options, self.settings.ingest_chunk_rows):
            raw = chunk.frame
            raw.index = pd.RangeIndex(rows + 1, rows + 1 + len(raw), name="_source_row")
            rows += len(raw)
            if job.preset is not None:
                mapped = job.preset.map_chunk(raw, state, self.settings)
            else:
                mapped = {job.kind: raw.rename(columns=job.mapping)}
            pre_rejected = mapped.pop("_rejected", None)
            for kind, frame in mapped.items():
                contract = job.preset.contracts.get(kind) if job.preset else None
                contract = contract or contract_for(kind)
                self._stage_frame(kind, contract, frame, raw, job, stager, reports, state)
            if pre_rejected is not None and len(pre_rejected):
                kind = job.preset.quarantine_kind
                rep = reports.setdefault(kind, KindReport(kind))
                for reason_text in pre_rejected:
                    rep.rejected.update(reason_text.split("; "))
                rep.rejected_rows += len(pre_rejected)
                stager.rejected_rows(
                    kind,
                    _quarantine_raw(raw, pre_rejected.index, pre_rejected, kind, job.path),
                )
            if self.progress:
                self.progress(label, chunk.bytes_done, chunk.bytes_total)
        if rows == 0:
            raise IngestError(f"{job.path}: has a header but no rows; nothing to ingest")
        return rows

    def _stage_frame(
        self,
        kind: str,
        contract: Contract,
        frame: pd.DataFrame,
        raw: pd.DataFrame,
        job: _Job,
        stager: _Stager,
        reports: dict[str, KindReport],
        state: dict,
    ) -> None:
        # A preset's staging-only table reports under its own name, quarantines under a kind.
        report_kind = kind if contract.kind in CONTRACTS else job.preset.quarantine_kind
        rep = reports.setdefault(contract.kind, KindReport(contract.kind))
        rep.read += len(frame)
        if kind == "order_lines" and (
            "line_number" not in frame or frame["line_number"].eq("").all()
        ):
            frame = _number_lines(frame, state)
        result = validate(
            frame,
            contract,
            source_tz=self.settings.source_timezone,
            now=self.now,
            future_tolerance=pd.Timedelta(self.settings.future_tolerance),
            value_format=job.options.values,
        )
        for reason_text in result.reasons:
            rep.rejected.update(reason_text.split("; "))
        rep.rejected_rows += len(result.rejected_index)
        if len(result.rejected_index):
            # Quarantine the row as it came in: the raw line behind each rejected row.
            source_rows = (
                frame.loc[result.rejected_index, "_source_row"]
                if "_source_row" in frame
                else pd.Series(result.rejected_index, index=result.rejected_index)
            )
            reasons = pd.Series(result.reasons.to_numpy(), index=source_rows.to_numpy())
            reasons = reasons.groupby(level=0).agg("; ".join)
            stager.rejected_rows(
                report_kind, _quarantine_raw(raw, reasons.index, reasons, report_kind, job.path)
            )
        stager.accepted(kind, self._without_erased(kind, result.accepted, rep), contract)

    def _without_erased(self, kind: str, rows: pd.DataFrame, rep: KindReport) -> pd.DataFrame:
        """``rows`` less those of erased customers. A customer row whose ``signup_at`` is
        after the erasure is a new consent record: it is kept, and it lifts the tombstone
        (once the ingest commits) for the rows of theirs that follow it."""
        if "customer_id" not in rows or not len(self.tombstones) or rows.empty:
            return rows
        erased = self.tombstones.erased_mask(rows["customer_id"])
        if not erased.any():
            return rows
        if kind == "customers" and "signup_at" in rows:
            signed = pd.to_datetime(rows["signup_at"], utc=True)
            for index in rows.index[erased]:
                when = self.tombstones.erased_at(str(rows.at[index, "customer_id"]))
                if pd.notna(signed[index]) and when is not None and signed[index] > when:
                    self.lifted.add(str(rows.at[index, "customer_id"]))
        drop = erased & ~rows["customer_id"].astype(str).isin(self.lifted)
        rep.erased += int(drop.sum())
        return rows[~drop]

    # -- step 3 and 4: deduplicate against the lake, write by month, commit ---------------
    def _settle(  # noqa: PLR0915 - one transaction; to split by step (issue 13)
        self, con: duckdb.DuckDBPyConnection, stager: _Stager, reports: dict[str, KindReport]
    ) -> tuple[dict[str, list[tuple[Path, str]]], list[tuple[Path, str]]]:
        out_root = stager.root / "out"
        review_files: list[tuple[Path, str]] = []
        data_files: dict[str, list[tuple[Path, str]]] = {}
        kinds = [k for k in CONTRACTS if k in stager.staged_kinds()]  # customers first
        for kind in kinds:
            contract = contract_for(kind)
            rep = reports.setdefault(kind, KindReport(kind))
            key = ", ".join(contract.key)
            staged = f"read_parquet('{stager.root / 'in' / kind}/*.parquet', union_by_name = true)"
            # Views, not tables: 35 M staged rows are read again rather than held twice.
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW inc AS SELECT *, {_hash_sql(contract)} AS _row_hash "
                f"FROM {staged}"
            )
            # Keys seen more than once in the input: usually none, always few.
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE multi AS SELECT {key}, "
                "count(DISTINCT _row_hash) AS versions, count(*) AS n FROM inc SEMI JOIN "
                f"(SELECT {key} FROM {staged} GROUP BY ALL HAVING count(*) > 1) USING ({key}) "
                "GROUP BY ALL"
            )
            (dup,) = con.execute(
                "SELECT coalesce(sum(n - 1), 0) FROM multi WHERE versions = 1"
            ).fetchone()
            rep.duplicates_in_input += int(dup)
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW uniq AS SELECT * FROM inc ANTI JOIN multi "
                f"USING ({key}) UNION ALL (SELECT * FROM inc SEMI JOIN (SELECT {key} FROM multi "
                f"WHERE versions = 1) USING ({key}) QUALIFY row_number() OVER "
                f"(PARTITION BY {key}) = 1)"
            )
            lake_rel = self.lake.relation_sql(kind)
            in_lake = bool(self.lake.files(kind))
            if in_lake:
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE existing AS SELECT {key}, _row_hash "
                    f"FROM {lake_rel} SEMI JOIN (SELECT {key} FROM {staged}) USING ({key})"
                )
                (same,) = con.execute(
                    f"SELECT count(*) FROM uniq u JOIN existing e USING ({key}) "
                    "WHERE u._row_hash = e._row_hash"
                ).fetchone()
                rep.already_in_lake += int(same)
                if kind == "customers":
                    self._profile_updates(con, lake_rel, out_root, data_files, reports)
            review_sql = (
                f"SELECT * FROM ({self._review_sql(contract, key, lake_rel, in_lake)}) r "
                f"WHERE (_row_hash, _version, _reasons) NOT IN (SELECT (_row_hash, _version, "
                f"_reasons) FROM {self._quarantined(kind, 'review')})"
            )
            n_review = con.execute(f"SELECT count(*) FROM ({review_sql})").fetchone()[0]
            if n_review:
                path = stager.root / "review" / f"{kind}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                con.execute(f"COPY ({review_sql}) TO '{path}' (FORMAT parquet)")
                for reason, n in con.execute(
                    f"SELECT _reasons, count(*) FROM ({review_sql}) "
                    "WHERE _version = 'incoming' GROUP BY ALL"
                ).fetchall():
                    rep.review[reason] += n
                review_files.append((path, f"{kind}/{self.ingest_id}-review.parquet"))
            fresh_rows = f"uniq ANTI JOIN existing USING ({key})" if in_lake else "uniq"
            con.execute(f"CREATE OR REPLACE TEMP VIEW new_rows AS SELECT * FROM {fresh_rows}")
            if kind in CUSTOMER_KINDS:
                known = (
                    f"(SELECT customer_id FROM {self.lake.relation_sql('customers')} "
                    "UNION SELECT customer_id FROM new_customers)"
                )
                if "customers" not in kinds:
                    con.execute("CREATE OR REPLACE TEMP TABLE new_customers (customer_id VARCHAR)")
                (unknown,) = con.execute(
                    f"SELECT count(*) FROM new_rows ANTI JOIN {known} USING (customer_id)"
                ).fetchone()
                if self.settings.unknown_customers == "reject" and unknown:
                    path = stager.root / "review" / f"{kind}-unknown.parquet"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fresh = (
                        "SELECT *, 'customer_id:unknown_customer' AS _reasons, "
                        f"'incoming' AS _version FROM new_rows ANTI JOIN {known} "
                        "USING (customer_id) WHERE (_row_hash, 'incoming', "
                        "'customer_id:unknown_customer') NOT IN (SELECT (_row_hash, _version, "
                        f"_reasons) FROM {self._quarantined(kind, 'review')})"
                    )
                    if con.execute(f"SELECT count(*) FROM ({fresh})").fetchone()[0]:
                        con.execute(f"COPY ({fresh}) TO '{path}' (FORMAT parquet)")
                        review_files.append(
                            (path, f"{kind}/{self.ingest_id}-unknown-review.parquet")
                        )
                    con.execute(
                        f"CREATE OR REPLACE TEMP VIEW new_rows AS SELECT * FROM {fresh_rows} "
                        f"SEMI JOIN {known} USING (customer_id)"
                    )
                    rep.review["customer_id:unknown_customer"] += int(unknown)
                else:
                    rep.unknown_customers += int(unknown)
            if kind == "customers":
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE new_customers AS SELECT customer_id FROM new_rows"
                )
            if kind == "orders":
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE new_orders AS "
                    "SELECT order_id, ordered_at FROM new_rows"
                )
            rep.accepted += con.execute("SELECT count(*) FROM new_rows").fetchone()[0]
            data_files.setdefault(kind, []).extend(
                self._write_months(con, kind, contract, out_root)
            )
        for kind, paths in stager.rejected.items():
            target = stager.root / "quarantine" / f"{kind}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            listed = ", ".join(f"'{p}'" for p in paths)
            fresh = (
                f"SELECT * FROM read_parquet([{listed}], union_by_name = true) "
                "WHERE _raw_hash NOT IN "
                f"(SELECT _raw_hash FROM {self._quarantined(kind, 'rejected')})"
            )
            n_fresh = con.execute(f"SELECT count(*) FROM ({fresh})").fetchone()[0]
            n_staged = con.execute(
                f"SELECT count(*) FROM read_parquet([{listed}], union_by_name = true)"
            ).fetchone()[0]
            reports.setdefault(kind, KindReport(kind)).already_quarantined += n_staged - n_fresh
            if n_fresh:
                con.execute(f"COPY ({fresh}) TO '{target}' (FORMAT parquet)")
                review_files.append((target, f"{kind}/{self.ingest_id}-rejected.parquet"))
        return data_files, review_files

    def _profile_updates(
        self,
        con: duckdb.DuckDBPyConnection,
        lake_rel: str,
        out_root: Path,
        data_files: dict[str, list[tuple[Path, str]]],
        reports: dict[str, KindReport],
    ) -> None:
        """Incoming customer rows of customers already in the lake, with the same sign-up,
        are profile updates, not conflicts: each field that differs from the customer's
        current profile (their row overlaid with the latest changes) becomes a
        ``profile_changes`` row dated at this ingest; an empty field changes nothing."""
        changes_rel = self.lake.relation_sql("profile_changes")
        changed = ", ".join(
            f"CASE WHEN u.{f} IS NOT NULL AND u.{f} IS DISTINCT FROM coalesce(ch.{f}, l.{f}) "
            f"THEN u.{f} END AS {f}"
            for f in PROFILE_FIELDS
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE profile_updated AS SELECT u.customer_id, {changed} "
            f"FROM uniq u JOIN (SELECT DISTINCT ON (customer_id) * FROM {lake_rel} "
            "SEMI JOIN existing USING (customer_id)) l USING (customer_id) "
            f"LEFT JOIN (SELECT customer_id, {latest_changes_sql()} FROM {changes_rel} "
            "GROUP BY customer_id) "
            "ch USING (customer_id) "
            "WHERE u._row_hash <> l._row_hash AND u.signup_at IS NOT DISTINCT FROM l.signup_at"
        )
        any_change = " OR ".join(f"{f} IS NOT NULL" for f in PROFILE_FIELDS)
        total, n_changed = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {any_change}) FROM profile_updated"
        ).fetchone()
        if not total:
            return
        rep = reports["customers"]
        rep.profile_updates += int(n_changed)
        rep.already_in_lake += int(total - n_changed)  # their changes are in the lake
        # The updated customers are neither new rows nor conflicts.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE uniq_profiles AS "
            "SELECT * FROM uniq ANTI JOIN profile_updated USING (customer_id)"
        )
        con.execute("CREATE OR REPLACE TEMP VIEW uniq AS SELECT * FROM uniq_profiles")
        if not n_changed:
            return
        source = ", ".join(p.name for p in self.source_paths).replace("'", "''")
        columns = ", ".join(PROFILE_FIELDS)
        con.execute(
            "CREATE OR REPLACE TEMP VIEW new_rows AS SELECT *, "
            f"{_hash_sql(PROFILE_CHANGES)} AS _row_hash FROM (SELECT "
            f"'{self.ingest_id}:' || customer_id AS change_id, customer_id, "
            f"TIMESTAMPTZ '{self.now.isoformat()}' AS changed_at, {columns}, "
            f"'ingest {source}' AS source FROM profile_updated WHERE {any_change})"
        )
        data_files.setdefault("profile_changes", []).extend(
            self._write_months(con, "profile_changes", PROFILE_CHANGES, out_root, "-updates")
        )

    def _quarantined(self, kind: str, what: str) -> str:
        """What earlier ingests quarantined for ``kind`` (empty relation when nothing)."""
        files = [p for p in self.lake.quarantine_files(kind) if p.name.endswith(f"-{what}.parquet")]
        if not files:
            cols = (
                "'' AS _raw_hash"
                if what == "rejected"
                else "'' AS _row_hash, '' AS _version, '' AS _reasons"
            )
            return f"(SELECT {cols} LIMIT 0)"
        listed = ", ".join(f"'{p}'" for p in files)
        return f"read_parquet([{listed}], union_by_name = true)"

    def _review_sql(self, contract: Contract, key: str, lake_rel: str, in_lake: bool) -> str:
        cols = ", ".join(contract.names)
        in_file = (
            f"SELECT {cols}, _row_hash, 'incoming' AS _version, "
            f"'{contract.key[0]}:conflicts_in_file' AS _reasons FROM inc "
            f"SEMI JOIN (SELECT {key} FROM multi WHERE versions > 1) USING ({key})"
        )
        if not in_lake:
            return in_file
        return (
            f"{in_file} UNION ALL SELECT {cols}, _row_hash, 'incoming', "
            f"'{contract.key[0]}:conflicts_with_lake' FROM uniq u "
            f"SEMI JOIN existing e ON {_key_join(contract, 'u', 'e')} "
            "AND u._row_hash <> e._row_hash "
            f"UNION ALL SELECT {cols}, _row_hash, 'lake', "
            f"'{contract.key[0]}:conflicts_with_lake' FROM {lake_rel} l "
            f"SEMI JOIN existing e ON {_key_join(contract, 'e', 'l')} "
            f"SEMI JOIN uniq u ON {_key_join(contract, 'u', 'l')} "
            "AND u._row_hash <> l._row_hash"
        )

    def _write_months(
        self,
        con: duckdb.DuckDBPyConnection,
        kind: str,
        contract: Contract,
        out_root: Path,
        tag: str = "",
    ) -> list[tuple[Path, str]]:
        if con.execute("SELECT count(*) FROM new_rows").fetchone()[0] == 0:
            return []
        if contract.partition_by is not None:
            month = f"coalesce(strftime({contract.partition_by}, '%Y-%m'), 'unknown')"
            source = "new_rows"
        else:  # order lines: by the month of their order, wherever that order is
            con.execute(
                "CREATE OR REPLACE TEMP TABLE all_orders AS "
                f"SELECT order_id, ordered_at FROM {self.lake.relation_sql('orders')}"
            )
            if con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'new_orders'"
            ).fetchone()[0]:
                con.execute("INSERT INTO all_orders SELECT * FROM new_orders")
            month = "coalesce(strftime(o.ordered_at, '%Y-%m'), 'unknown')"
            source = (
                "new_rows n LEFT JOIN (SELECT order_id, min(ordered_at) AS ordered_at "
                "FROM all_orders GROUP BY order_id) o USING (order_id)"
            )
        prefix = "n." if contract.partition_by is None else ""
        cols = ", ".join(
            f"{prefix}{d[0]}" for d in con.execute("SELECT * FROM new_rows LIMIT 0").description
        )
        target = out_root / f"{kind}{tag}"  # a tagged write has a folder of its own
        out_root.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT {cols}, '{self.ingest_id}' AS _ingest_id, {month} AS month "
            f"FROM {source}) TO '{target}' (FORMAT parquet, PARTITION_BY (month), "
            f"FILENAME_PATTERN 'part-{self.ingest_id}{tag}-{{i}}')"
        )
        return [
            (p, f"{kind}/{p.relative_to(target).as_posix()}")
            for p in sorted(target.rglob(f"part-{self.ingest_id}{tag}-*.parquet"))
        ]

    # -- the whole run -------------------------------------------------------------------
    def run(self, jobs: list[_Job]) -> IngestReport:
        started = time.perf_counter()
        self.source_paths = [j.path for j in jobs]
        for job in jobs:
            _check_columns(job)
        # Customers first: a new customer record of an erased customer must precede the
        # rest of their rows (see _without_erased).
        jobs = sorted(jobs, key=lambda job: job.kind != "customers")
        with self.lake.writer() as writer:
            staging = self.settings.staging_dir / self.ingest_id
            staging.mkdir(parents=True)
            try:
                stager = _Stager(staging)
                reports: dict[str, KindReport] = {}
                rows = sum(self._stage_job(job, stager, reports) for job in jobs)
                con = connect(self.settings, staging / "duckdb-tmp")
                for job in jobs:
                    if job.preset is not None:
                        job.preset.derive(con, stager.root / "in", stager, reports, self)
                data_files, quarantine_files = self._settle(con, stager, reports)
                con.close()
                manifest = writer.commit(
                    data_files,
                    quarantine_files,
                    {
                        "ingest_id": self.ingest_id,
                        "sources": [str(j.path) for j in jobs],
                        "accepted": {k: r.accepted for k, r in reports.items()},
                    },
                )
                self.tombstones.lift(self.lifted)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return IngestReport(
            ingest_id=self.ingest_id,
            sources=[str(j.path) for j in jobs],
            rows_read=rows,
            seconds=time.perf_counter() - started,
            kinds=reports,
            lake_version=manifest.version,
        )

    def validate_frame(self, frame: pd.DataFrame, contract: Contract):
        """Validate a frame with this run's clock and settings (for presets' derived rows)."""
        return validate(
            frame,
            contract,
            source_tz=self.settings.source_timezone,
            now=self.now,
            future_tolerance=pd.Timedelta(self.settings.future_tolerance),
        )


def _key_join(contract: Contract, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{k} = {b}.{k}" for k in contract.key)


def _number_lines(frame: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Number lines 1, 2, ... within each order, continuing across chunks."""
    counts: dict[str, int] = state.setdefault("line_counts", {})
    frame = frame.copy()
    position = frame.groupby("order_id", sort=False).cumcount() + 1
    offset = frame["order_id"].map(counts).fillna(0).astype("int64")
    frame["line_number"] = (position + offset).astype("int64")
    last = frame.groupby("order_id", sort=False)["line_number"].max()
    counts.update(last.to_dict())
    return frame


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder becomes the contract files in it (customers.parquet, ...)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and _kind_from_name(p) is not None
            )
            if not found:
                raise IngestError(
                    f"{path}: a folder with no contract files in it; expected files named "
                    f"after their kind ({', '.join(CONTRACTS)}), e.g. orders.csv"
                )
            out.extend(found)
        else:
            out.append(path)
    return out


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    *,
    kind: str | None = None,
    mapping: str | dict[str, str] | None = None,
    preset: str | None = None,
    encoding: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    true_words: Sequence[str] | None = None,
    false_words: Sequence[str] | None = None,
    options_file: Path | None = None,
    now: datetime | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest files into the lake under ``settings.home``; see the module docstring.

    Args:
        paths: CSV (plain or gzip) or Parquet files, or folders of files named by kind.
        settings: where the lake is and the policies to apply.
        kind: the contract the files follow; guessed from the file name or columns if None.
        mapping: column renames, ``"theirs=ours,..."`` or a dict.
        preset: name of a preset for a known foreign format (see ``kizuna ingest --help``).
        encoding: text encoding of CSV files (default UTF-8, with or without a BOM).
        sep: CSV separator, one character (default: sniffed from the header).
        decimal: ``","`` for numbers written 12,50 (default ``"."``).
        true_words: more words read as true in boolean columns, any case (``ja``).
        false_words: more words read as false in boolean columns, any case (``nein``).
        options_file: a saved format (TOML or JSON: sep, encoding, decimal, true, false,
            map); the arguments above override what it says.
        now: the clock for the future-timestamp rule (tests pin it).
        progress: called as ``progress(file_name, bytes_done, bytes_total)``.

    Raises:
        IngestError: the input or the options cannot be ingested; nothing was written.
    """
    from dataclasses import replace

    from kizuna.features.sources import DeclaredFormat, load_format

    try:
        declared = DeclaredFormat(
            sep=sep,
            encoding=encoding,
            decimal=decimal,
            true_words=tuple(true_words) if true_words else None,
            false_words=tuple(false_words) if false_words else None,
            mapping=mapping or None,
        )
        if options_file is not None:
            declared = declared.over(load_format(Path(options_file)))
        if kind is not None:
            kind = KIND_ALIASES.get(kind, kind)
            try:
                contract_for(kind)
            except ValueError as exc:
                raise IngestError(f"--kind: {exc}") from None
        declared_map = declared.mapping
        rename = parse_mapping(declared_map) if not isinstance(declared_map, dict) else declared_map
        chosen = get_preset(preset) if preset else None
        if chosen is not None and (kind or rename):
            raise IngestError("--preset sets kinds and columns itself; drop --kind and --map")
        if chosen is not None and (declared.declares_format() or options_file is not None):
            raise IngestError(
                "--preset sets the file format itself; drop --sep, --encoding, --decimal, "
                "--true, --false and --options-file"
            )
        read_options = declared.read_options()
        jobs = [
            _Job(
                path,
                kind,
                chosen,
                rename,
                chosen.read_options(path) if chosen else replace(read_options),
            )
            for path in _expand([Path(p) for p in paths])
        ]
        return Ingestor(settings, now=now, progress=progress).run(jobs)
    except SourceError as exc:
        raise IngestError(str(exc)) from exc


__all__ = ["IngestError", "IngestReport", "KindReport", "duck_type", "ingest", "parse_mapping"]
